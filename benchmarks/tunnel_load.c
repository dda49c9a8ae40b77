/* tunnel_load: the HTTPS load generator of `make bench-proxy` (benchmarks/bench_proxy.py).
 *
 * Each of C slots, for a fixed time: open a TCP connection to the proxy, send
 * `CONNECT host:443`, do TLS through the tunnel (SNI = host, certificate verified against
 * --cafile, host name checked, no session resumption: every tunnel is a full handshake), send K
 * keep-alive GET requests one after another, then close and start the next tunnel with the next
 * host. Latency is measured per request (request written -> whole response read) and per tunnel
 * setup (TCP connect -> TLS established). With --direct there is no proxy: TLS straight to the
 * origin, which is the ceiling the generator itself reaches on this machine.
 *
 * Why C with OpenSSL and one epoll loop rather than Python/uvloop: on a 2-core machine the
 * generator shares the CPU with the proxy under test, and a full TLS client handshake plus
 * certificate verification costs tens of microseconds in C but several hundred in Python (ssl
 * module + event loop + parsing). One process, one thread, no per-request allocation; its own
 * CPU time (getrusage) is printed with the results so the harness can report it beside the
 * proxy's. Wrk cannot send CONNECT, which is why this exists at all.
 *
 * Not the bottleneck, measured in the first full `make bench-proxy` run (2 cores, 32 slots,
 * ECDSA P-256 origin certificate, TLS 1.3, verification on): straight at nginx (`--direct`) it
 * completes 1,064 new TLS connections/s (8,703 req/s at 10 per tunnel) using 61 % of one core,
 * about 0.6 ms of its own CPU per new connection, with nginx on the other core. Through the
 * proxies it is asked for far less: mitmdump and Schoolgate manage 131 new connections/s, at
 * which it uses 9-10 % of one core while the proxy spends 6.8-7.1 ms of CPU per connection; the
 * proxy is saturated (its CPU per second is ~0.9 core) and the generator is idle most of the
 * time. e2guardian, which relays without decrypting, reaches 899/s, near the direct ceiling: its
 * row is bounded by the generator and the origin, so read it as "at least".
 *
 * Output: one JSON object on stdout. Build: gcc -O2 -o tunnel_load tunnel_load.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF 65536
#define HIST_US 10              /* histogram resolution: 10 microseconds */
#define HIST_N 1000000          /* ... up to 10 seconds */
#define OP_TIMEOUT_US 10000000  /* any single step taking longer is an error */

enum state { ST_TCP, ST_CONNECT_SENT, ST_TLS, ST_REQ, ST_RESP_HEAD, ST_RESP_BODY, ST_IDLE };

struct hist { uint32_t *b; uint64_t n; };

struct conn {
    int fd;
    enum state st;
    SSL *ssl;
    const char *host;
    int host_no;
    int done_in_tunnel;
    uint64_t t_open, t_req, t_step;
    char buf[BUF];
    size_t len;
    long long body_left;     /* -1: chunked, read to the terminating chunk */
    int status;
    size_t wlen, woff;
    char wbuf[1024];
};

static struct {
    struct sockaddr_in addr;
    int direct, per_tunnel, concurrency, port;
    double seconds;
    char **hosts; int nhosts, next_host;
    const char *path_prefix;
    SSL_CTX *ctx;
    int ep;
    uint64_t start, deadline;
    int stopping;
    /* results */
    uint64_t requests, tunnels_started, tunnels_done, tunnels_partial, bytes;
    uint64_t st2xx, st3xx, st403, st_other;
    uint64_t e_connect, e_connect_status, e_tls, e_io, e_parse, e_timeout;
    struct hist lat, setup;
} G;

static uint64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void hist_add(struct hist *h, uint64_t us) {
    uint64_t i = us / HIST_US;
    if (i >= HIST_N) i = HIST_N - 1;
    h->b[i]++;
    h->n++;
}

static double hist_pct(const struct hist *h, double p) {
    if (!h->n) return -1;
    uint64_t want = (uint64_t)(p / 100.0 * (double)h->n), seen = 0;
    if (want >= h->n) want = h->n - 1;
    for (uint64_t i = 0; i < HIST_N; i++) {
        seen += h->b[i];
        if (seen > want) return (double)(i * HIST_US + HIST_US / 2) / 1000.0;
    }
    return (double)(HIST_N * HIST_US) / 1000.0;
}

static void watch(struct conn *c, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(G.ep, op, c->fd, &ev);
}

static void start_tunnel(struct conn *c);

static void close_conn(struct conn *c) {
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        epoll_ctl(G.ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->st = ST_IDLE;
}

static void fail(struct conn *c, uint64_t *counter) {
    if (!G.stopping) (*counter)++;
    close_conn(c);
    if (!G.stopping) start_tunnel(c);
}

static void start_tunnel(struct conn *c) {
    c->host_no = G.next_host;
    c->host = G.hosts[G.next_host];
    G.next_host = (G.next_host + 1) % G.nhosts;
    c->done_in_tunnel = 0;
    c->len = 0;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->t_open = c->t_step = now_us();
    G.tunnels_started++;
    int r = connect(c->fd, (struct sockaddr *)&G.addr, sizeof G.addr);
    if (r < 0 && errno != EINPROGRESS) {
        G.e_connect++;
        close(c->fd);
        c->fd = -1;
        c->st = ST_IDLE;
        return;
    }
    c->st = ST_TCP;
    watch(c, EPOLLOUT, EPOLL_CTL_ADD);
}

static void begin_tls(struct conn *c) {
    c->ssl = SSL_new(G.ctx);
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, c->host);
    SSL_set1_host(c->ssl, c->host);
    SSL_set_connect_state(c->ssl);
    c->st = ST_TLS;
    c->t_step = now_us();
}

static void send_request(struct conn *c) {
    c->wlen = (size_t)snprintf(c->wbuf, sizeof c->wbuf,
                               "GET %s%d/%d HTTP/1.1\r\nHost: %s\r\nUser-Agent: tunnel_load\r\n"
                               "Accept: */*\r\n\r\n",
                               G.path_prefix, c->host_no, c->done_in_tunnel, c->host);
    c->woff = 0;
    c->st = ST_REQ;
    c->t_req = c->t_step = now_us();
    c->len = 0;
}

/* Parse the response head in c->buf; returns 1 when complete, 0 for more, -1 on error. */
static int parse_head(struct conn *c) {
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end) return c->len >= BUF ? -1 : 0;
    size_t head = (size_t)(end - c->buf) + 4;
    if (c->len < 12 || memcmp(c->buf, "HTTP/1.", 7) != 0) return -1;
    c->status = atoi(c->buf + 9);
    c->body_left = 0;
    for (char *p = c->buf; p < end; ) {
        char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
        if (!eol) break;
        if (eol - p > 15 && strncasecmp(p, "content-length:", 15) == 0)
            c->body_left = atoll(p + 15);
        else if (eol - p > 18 && strncasecmp(p, "transfer-encoding:", 18) == 0 &&
                 memmem(p, (size_t)(eol - p), "chunked", 7))
            c->body_left = -1;
        p = eol + 2;
    }
    memmove(c->buf, c->buf + head, c->len - head);
    c->len -= head;
    return 1;
}

/* Consume body bytes in c->buf; returns 1 when the body is complete. */
static int eat_body(struct conn *c) {
    if (c->body_left >= 0) {
        size_t take = c->len < (size_t)c->body_left ? c->len : (size_t)c->body_left;
        c->body_left -= (long long)take;
        G.bytes += take;
        memmove(c->buf, c->buf + take, c->len - take);
        c->len -= take;
        return c->body_left == 0;
    }
    /* Chunked: the bodies this harness serves never contain CRLF, so the terminating chunk is
     * found by its bytes; keep the last 4 bytes in case it straddles two reads. */
    char *t = memmem(c->buf, c->len, "0\r\n\r\n", 5);
    if (t && (t == c->buf || t[-1] == '\n')) {
        size_t used = (size_t)(t - c->buf) + 5;
        G.bytes += used;
        memmove(c->buf, c->buf + used, c->len - used);
        c->len -= used;
        return 1;
    }
    if (c->len > 4) {
        G.bytes += c->len - 4;
        memmove(c->buf, c->buf + c->len - 4, 4);
        c->len = 4;
    }
    return 0;
}

static void response_done(struct conn *c) {
    uint64_t t = now_us();
    if (t > G.deadline) {  /* outside the window: not counted, and no more requests */
        G.stopping = 1;
        if (c->done_in_tunnel > 0) G.tunnels_partial++;
        close_conn(c);
        return;
    }
    hist_add(&G.lat, t - c->t_req);
    G.requests++;
    if (c->status >= 200 && c->status < 300) G.st2xx++;
    else if (c->status >= 300 && c->status < 400) G.st3xx++;
    else if (c->status == 403) G.st403++;
    else G.st_other++;
    c->done_in_tunnel++;
    if (c->done_in_tunnel >= G.per_tunnel) {
        G.tunnels_done++;
        close_conn(c);
        start_tunnel(c);
    } else {
        send_request(c);
    }
}

/* Reads or writes through TLS (or the plain socket before it); returns bytes, 0 for "try again
 * later" (interest set), -1 on error/EOF. */
static ssize_t io_read(struct conn *c, char *p, size_t n) {
    if (!c->ssl) {
        ssize_t r = read(c->fd, p, n);
        if (r > 0) return r;
        if (r < 0 && errno == EAGAIN) { watch(c, EPOLLIN, EPOLL_CTL_MOD); return 0; }
        return -1;
    }
    int r = SSL_read(c->ssl, p, (int)n);
    if (r > 0) return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) { watch(c, EPOLLIN, EPOLL_CTL_MOD); return 0; }
    if (e == SSL_ERROR_WANT_WRITE) { watch(c, EPOLLOUT, EPOLL_CTL_MOD); return 0; }
    return -1;
}

static ssize_t io_write(struct conn *c, const char *p, size_t n) {
    if (!c->ssl) {
        ssize_t r = write(c->fd, p, n);
        if (r >= 0) return r ? r : 0;
        if (errno == EAGAIN) { watch(c, EPOLLOUT, EPOLL_CTL_MOD); return 0; }
        return -1;
    }
    int r = SSL_write(c->ssl, p, (int)n);
    if (r > 0) return r;
    int e = SSL_get_error(c->ssl, r);
    if (e == SSL_ERROR_WANT_READ) { watch(c, EPOLLIN, EPOLL_CTL_MOD); return 0; }
    if (e == SSL_ERROR_WANT_WRITE) { watch(c, EPOLLOUT, EPOLL_CTL_MOD); return 0; }
    return -1;
}

static void step(struct conn *c) {
    for (;;) {
        switch (c->st) {
        case ST_IDLE:
            return;
        case ST_TCP: {
            int err = 0;
            socklen_t l = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
            if (err) { fail(c, &G.e_connect); return; }
            if (G.direct) { begin_tls(c); continue; }
            c->wlen = (size_t)snprintf(c->wbuf, sizeof c->wbuf,
                                       "CONNECT %s:%d HTTP/1.1\r\nHost: %s:%d\r\n\r\n",
                                       c->host, G.port, c->host, G.port);
            ssize_t w = write(c->fd, c->wbuf, c->wlen);
            if (w != (ssize_t)c->wlen) { fail(c, &G.e_io); return; }
            c->st = ST_CONNECT_SENT;
            c->len = 0;
            c->t_step = now_us();
            watch(c, EPOLLIN, EPOLL_CTL_MOD);
            return;
        }
        case ST_CONNECT_SENT: {
            ssize_t r = read(c->fd, c->buf + c->len, BUF - c->len);
            if (r < 0 && errno == EAGAIN) return;
            if (r <= 0) { fail(c, &G.e_io); return; }
            c->len += (size_t)r;
            char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
            if (!end) { if (c->len >= BUF) fail(c, &G.e_parse); return; }
            if (c->len < 12 || memcmp(c->buf + 8, " 200", 4) != 0) {
                fail(c, &G.e_connect_status);
                return;
            }
            if ((size_t)(end + 4 - c->buf) != c->len) { fail(c, &G.e_parse); return; }
            c->len = 0;
            begin_tls(c);
            continue;
        }
        case ST_TLS: {
            int r = SSL_do_handshake(c->ssl);
            if (r == 1) {
                hist_add(&G.setup, now_us() - c->t_open);
                send_request(c);
                continue;
            }
            int e = SSL_get_error(c->ssl, r);
            if (e == SSL_ERROR_WANT_READ) { watch(c, EPOLLIN, EPOLL_CTL_MOD); return; }
            if (e == SSL_ERROR_WANT_WRITE) { watch(c, EPOLLOUT, EPOLL_CTL_MOD); return; }
            if (getenv("TUNNEL_LOAD_DEBUG")) ERR_print_errors_fp(stderr);
            ERR_clear_error();
            fail(c, &G.e_tls);
            return;
        }
        case ST_REQ: {
            ssize_t w = io_write(c, c->wbuf + c->woff, c->wlen - c->woff);
            if (w < 0) { fail(c, &G.e_io); return; }
            if (w == 0) return;
            c->woff += (size_t)w;
            if (c->woff < c->wlen) continue;
            c->st = ST_RESP_HEAD;
            c->t_step = now_us();
            continue;
        }
        case ST_RESP_HEAD:
        case ST_RESP_BODY: {
            if (c->st == ST_RESP_HEAD && c->len) {
                int h = parse_head(c);
                if (h < 0) { fail(c, &G.e_parse); return; }
                if (h == 1) { c->st = ST_RESP_BODY; continue; }
            }
            if (c->st == ST_RESP_BODY && (c->len || c->body_left == 0)) {
                if (eat_body(c)) {
                    if (c->len) { fail(c, &G.e_parse); return; }  /* nothing was pipelined */
                    response_done(c);
                    if (c->st == ST_TCP || c->st == ST_IDLE) return;  /* next tunnel: wait */
                    continue;
                }
            }
            ssize_t r = io_read(c, c->buf + c->len, BUF - c->len);
            if (r < 0) { fail(c, &G.e_io); return; }
            if (r == 0) return;
            c->len += (size_t)r;
            continue;
        }
        }
    }
}

static void usage(void) {
    fprintf(stderr,
            "usage: tunnel_load --proxy HOST:PORT | --direct HOST:PORT --hosts FILE --cafile PEM\n"
            "       [--port 443] [--per-tunnel K] [--concurrency C] [--seconds S]\n"
            "       [--path-prefix /a/]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *target = NULL, *hosts_file = NULL, *cafile = NULL;
    G.port = 443; G.per_tunnel = 1; G.concurrency = 16; G.seconds = 10; G.path_prefix = "/a/";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) usage();
        if (!strcmp(a, "--proxy")) target = v;
        else if (!strcmp(a, "--direct")) { target = v; G.direct = 1; }
        else if (!strcmp(a, "--hosts")) hosts_file = v;
        else if (!strcmp(a, "--cafile")) cafile = v;
        else if (!strcmp(a, "--port")) G.port = atoi(v);
        else if (!strcmp(a, "--per-tunnel")) G.per_tunnel = atoi(v);
        else if (!strcmp(a, "--concurrency")) G.concurrency = atoi(v);
        else if (!strcmp(a, "--seconds")) G.seconds = atof(v);
        else if (!strcmp(a, "--path-prefix")) G.path_prefix = v;
        else usage();
        i++;
    }
    if (!target || !hosts_file || !cafile || G.per_tunnel < 1 || G.concurrency < 1) usage();
    char thost[64];
    const char *colon = strrchr(target, ':');
    if (!colon || (size_t)(colon - target) >= sizeof thost) usage();
    memcpy(thost, target, (size_t)(colon - target));
    thost[colon - target] = 0;
    G.addr.sin_family = AF_INET;
    G.addr.sin_port = htons((uint16_t)atoi(colon + 1));
    if (inet_pton(AF_INET, thost, &G.addr.sin_addr) != 1) usage();

    FILE *f = fopen(hosts_file, "r");
    if (!f) { perror(hosts_file); return 2; }
    char line[512];
    int cap = 64;
    G.hosts = malloc(sizeof(char *) * (size_t)cap);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        if (!line[0]) continue;
        if (G.nhosts == cap) G.hosts = realloc(G.hosts, sizeof(char *) * (size_t)(cap *= 2));
        G.hosts[G.nhosts++] = strdup(line);
    }
    fclose(f);
    if (!G.nhosts) { fprintf(stderr, "%s: no hosts\n", hosts_file); return 2; }

    G.ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(G.ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_load_verify_locations(G.ctx, cafile, NULL) != 1) {
        ERR_print_errors_fp(stderr);
        return 2;
    }
    /* Every tunnel a full handshake: no tickets, no client session cache. */
    SSL_CTX_set_options(G.ctx, SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(G.ctx, SSL_SESS_CACHE_OFF);
    static const unsigned char alpn[] = "\x08http/1.1";
    SSL_CTX_set_alpn_protos(G.ctx, alpn, sizeof alpn - 1);

    G.lat.b = calloc(HIST_N, sizeof(uint32_t));
    G.setup.b = calloc(HIST_N, sizeof(uint32_t));
    G.ep = epoll_create1(0);
    struct conn *conns = calloc((size_t)G.concurrency, sizeof(struct conn));
    G.start = now_us();
    G.deadline = G.start + (uint64_t)(G.seconds * 1e6);
    for (int i = 0; i < G.concurrency; i++) {
        conns[i].fd = -1;
        start_tunnel(&conns[i]);
    }
    struct epoll_event evs[256];
    uint64_t last_sweep = G.start;
    while (1) {
        uint64_t t = now_us();
        if (t >= G.deadline) break;
        int timeout_ms = (int)((G.deadline - t) / 1000) + 1;
        if (timeout_ms > 100) timeout_ms = 100;
        int n = epoll_wait(G.ep, evs, 256, timeout_ms);
        for (int i = 0; i < n; i++) step(evs[i].data.ptr);
        t = now_us();
        if (t - last_sweep > 100000) {
            last_sweep = t;
            for (int i = 0; i < G.concurrency; i++) {
                struct conn *c = &conns[i];
                if (c->st == ST_IDLE) { start_tunnel(c); continue; }
                if (t - c->t_step > OP_TIMEOUT_US) fail(c, &G.e_timeout);
            }
        }
    }
    G.stopping = 1;
    double elapsed = (double)(now_us() - G.start) / 1e6;
    for (int i = 0; i < G.concurrency; i++) {
        if (conns[i].st != ST_IDLE && conns[i].done_in_tunnel > 0) G.tunnels_partial++;
        close_conn(&conns[i]);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    printf("{\"seconds\": %.3f, \"requests\": %llu, \"per_tunnel\": %d, \"concurrency\": %d,"
           " \"tunnels_started\": %llu, \"tunnels_done\": %llu, \"tunnels_partial\": %llu,"
           " \"bytes\": %llu, \"status_2xx\": %llu, \"status_3xx\": %llu, \"status_403\": %llu,"
           " \"status_other\": %llu, \"errors\": {\"connect\": %llu, \"connect_status\": %llu,"
           " \"tls\": %llu, \"io\": %llu, \"parse\": %llu, \"timeout\": %llu},"
           " \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"setup_p50_ms\": %.3f, \"setup_p99_ms\": %.3f,"
           " \"cpu_seconds\": %.4f}\n",
           elapsed, (unsigned long long)G.requests, G.per_tunnel, G.concurrency,
           (unsigned long long)G.tunnels_started, (unsigned long long)G.tunnels_done,
           (unsigned long long)G.tunnels_partial, (unsigned long long)G.bytes,
           (unsigned long long)G.st2xx, (unsigned long long)G.st3xx,
           (unsigned long long)G.st403, (unsigned long long)G.st_other,
           (unsigned long long)G.e_connect, (unsigned long long)G.e_connect_status,
           (unsigned long long)G.e_tls, (unsigned long long)G.e_io,
           (unsigned long long)G.e_parse, (unsigned long long)G.e_timeout,
           hist_pct(&G.lat, 50), hist_pct(&G.lat, 99), hist_pct(&G.setup, 50),
           hist_pct(&G.setup, 99), cpu);
    return 0;
}
