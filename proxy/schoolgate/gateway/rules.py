"""The rules one generation of the gateway decides by: everything derived from the config and the
lists (classifier, policy, block page, problem-report page, identity sources), built in one place
and swapped whole on reload. `build_rules` is the only way they are made: the gateway, its reload
and `schoolgate why` all call it, so a verdict cannot be reached two ways.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ..classify import Classifier
from ..classify.illegal import IllegalLists
from ..classify.library import KeywordLibrary
from ..classify.urls import parse_target
from ..config.model import Config, ConfigError
from ..identify.identifier import IdentitySources
from ..identify.maps import IpUserMap
from ..pages import Page
from ..policy import Policy
from ..policy.blockpage import BlockPage
from ..policy.decryption import DecryptionRules
from ..sources.identity import build_identity
from ..sources.keywords import load_library
from ..sources.lists import build_classifier
from ..sources.localpolicy import (
    LocalPolicyError,
    apply_local_policy,
    load_local_policy,
    local_policy_path,
    next_change,
)
from ..wording import counted

__all__ = ["Rules", "build_rules", "load_keywords", "refuse_illegal_allows"]

log = logging.getLogger("schoolgate")


@dataclass(frozen=True, slots=True)
class Rules:
    """Everything derived from the config and the lists, swapped whole on reload. A request takes
    one snapshot at its first hook, so it is decided by one generation from start to finish."""

    config: Config
    """The config with the command line's allow and block entries merged into its groups."""
    classifier: Classifier
    policy: Policy
    block_page: BlockPage
    identity: IdentitySources
    report_page: Page
    """The template of the pages answering the block page's report forms
    (`problem-report.html`), compiled with this generation so an edit applies on reload."""
    decryption: DecryptionRules
    """What `policy.decryption.decryption` needs to say which hosts `selective` decrypts."""
    generation: int = 1
    next_lapse: float | None = None
    """When a command-line allow or block entry next lapses (`--until`): reload then."""


def load_keywords(config: Config) -> KeywordLibrary | None:
    """The keyword library (blocking I/O), or None. A bad phrase is logged with its file and
    line and skipped; the rest loads."""
    if config.keyword_library is None:
        return None
    library = load_library(config.keyword_library)
    for problem in library.problems:
        log.warning("%s", problem)
    log.info("keyword library %s: %s", config.keyword_library, counted(len(library), "phrase"))
    return library


def build_rules(config: Config, illegal: IllegalLists, generation: int = 1, *,
                cache: bool = False, ip_users: IpUserMap | None = None) -> Rules:
    """Build every config-derived part (blocking: list files are read). With `cache`, the list
    index comes from (or is saved to) the compiled cache in the data directory. `ip_users` is
    the IP -> user map, which outlives generations (pushed entries must survive a reload).
    Raises ConfigError for overrides that try to allow an illegal-list entry."""
    classifier = build_classifier(config, cache=cache, illegal=illegal,
                                  library=load_keywords(config))
    refuse_illegal_allows(config, classifier)
    now = time.time()
    try:
        local = load_local_policy(local_policy_path(config))
    except LocalPolicyError as e:
        raise ConfigError([str(e)]) from None
    # The CLI refuses an allow for an illegal-list URL when it is made; a list refresh may add
    # one later. Such an entry is dropped here (the lists outrank it anyway), not the reload.
    kept = []
    for entry in local:
        if entry.action == "allow" and entry.active(now):
            host, path = parse_target(entry.target)
            if classifier.illegal_match(f"http://{host}{path or '/'}") is not None:
                log.error("local policy entry %d (allow %s) is refused: the URL is on an "
                          "illegal-content list, which nothing can override", entry.id,
                          entry.target)
                continue
        kept.append(entry)
    merged = apply_local_policy(config, kept, now)
    return Rules(merged, classifier, Policy(merged), BlockPage(merged),
                 build_identity(merged, ip_users), Page("problem-report.html", merged.templates),
                 DecryptionRules(merged, classifier), generation, next_change(kept, now))


def refuse_illegal_allows(config: Config, classifier: Classifier) -> None:
    """An `allow` entry naming something on an illegal-content list is refused outright. (The
    lists outrank every allow anyway; refusing says so to whoever wrote it.)"""
    problems = []
    for group in config.groups.values():
        for o in group.allow:
            url = f"http://{o.host}{o.path or '/'}"
            match = classifier.illegal_match(url)
            if match is not None:
                problems.append(
                    f"{o.where}: refused: {o.target!r} is on the illegal-content list "
                    f"{match.name!r}, which no group, allow entry or administrator can override"
                )
    if problems:
        raise ConfigError(problems)
