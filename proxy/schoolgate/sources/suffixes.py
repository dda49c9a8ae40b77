"""A school's own Public Suffix List file, read for `classify.canonical.registrable_domain`
(which otherwise uses the snapshot bundled with tldextract). Reading only: nothing is fetched."""

from __future__ import annotations

import functools
import io
import os
import pathlib

import requests
import tldextract

from ..classify.canonical import snapshot_suffixes

__all__ = ["suffix_list"]


@functools.lru_cache(maxsize=8)
def suffix_list(path: str | os.PathLike[str] | None = None) -> tldextract.TLDExtract:
    """The Public Suffix List matcher for `registrable_domain`, built once per `path`.

    `None` uses the snapshot bundled with tldextract; a path reads that local
    `public_suffix_list.dat` (ICANN and private sections). Neither ever fetches from the network
    or writes a cache. Raises `OSError` when the file cannot be read.
    """
    if path is None:
        return snapshot_suffixes()
    return _local_suffix_list(os.fspath(path))


def _local_suffix_list(path: str) -> tldextract.TLDExtract:
    data = pathlib.Path(path).read_bytes()
    url = pathlib.Path(path).resolve().as_uri()

    class LocalFile(requests.adapters.BaseAdapter):
        # tldextract reads suffix lists through a requests session. Its own file:// support
        # (requests-file) leaves the file open (a ResourceWarning), so answer from bytes we
        # already read: no socket, no open file, no cache written.
        def send(self, request: requests.PreparedRequest, *args: object,
                 **kwargs: object) -> requests.Response:
            response = requests.Response()
            response.status_code = 200
            response.encoding = "utf-8"
            response.raw = io.BytesIO(data)
            response.url = request.url or url
            response.request = request
            return response

        def close(self) -> None:
            pass

    extractor = tldextract.TLDExtract(
        suffix_list_urls=(url,),
        cache_dir=None,
        fallback_to_snapshot=False,  # a list we were given must be the list we use
        include_psl_private_domains=True,
    )
    with requests.Session() as session:
        session.trust_env = False  # no proxy variables or ~/.netrc: there is nothing to fetch
        session.mount("file://", LocalFile())
        extractor("example.com", session=session)  # builds and keeps the suffix trie now
    return extractor
