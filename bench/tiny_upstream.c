// tiny_upstream: the cheapest HTTP upstream we can write, for
// bench/run_gateway_bench.sh's UPSTREAM=tiny. One thread, epoll, a fixed
// 200 answer to every request head, keep-alive, pipelined heads answered in
// one send.
//
// Why: to compare proxies on an upstream with no work of its own. It was
// meant to free CPU 0 (wrk and the upstream) so that, pinned, the proxy's
// core would be the bound; it does not: it costs about what user-service
// costs, most of it the loopback send (docs/benchmarks.md, "Which core is
// full"). With QUOTA the proxy is the bound whichever upstream runs.
//
// Not a server: requests must have no body (GET /health); a head over
// 8 KiB, or answers the peer does not read past 64 KiB, close the
// connection.
//
//   cc -O2 bench/tiny_upstream.c -o /tmp/tiny_upstream && /tmp/tiny_upstream PORT
#define _GNU_SOURCE  // memmem
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

enum { kMaxFds = 65536, kInSize = 8192, kOutSize = 65536 };

static const char kAnswer[] =
    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n"
    "{\"status\":\"ok\"}";

struct conn {
  size_t in_len;
  size_t out_len;
  int want_out;  // registered for EPOLLOUT
  char in[kInSize];
  char out[kOutSize];
};

static struct conn* conns[kMaxFds];
static int epfd;

static void drop(int fd) {
  free(conns[fd]);
  conns[fd] = NULL;
  close(fd);
}

// Sends what is pending; 0 on success (all or part sent), -1 to close.
static int flush_out(int fd, struct conn* c) {
  size_t sent = 0;
  while (sent < c->out_len) {
    ssize_t n = send(fd, c->out + sent, c->out_len - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      sent += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      break;
    } else {
      return -1;
    }
  }
  memmove(c->out, c->out + sent, c->out_len - sent);
  c->out_len -= sent;
  // Wait for room only while answers are pending (rare: the peer reads).
  if ((c->out_len != 0) != c->want_out) {
    c->want_out = c->out_len != 0;
    struct epoll_event ev = {.events = EPOLLIN | (c->want_out ? EPOLLOUT : 0), .data.fd = fd};
    epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
  }
  return 0;
}

// Level-triggered: one recv per event; whatever it left raises the next one.
static void on_readable(int fd) {
  struct conn* c = conns[fd];
  if (c->in_len == kInSize) {  // a head over 8 KiB
    drop(fd);
    return;
  }
  ssize_t n = recv(fd, c->in + c->in_len, kInSize - c->in_len, MSG_DONTWAIT);
  if (n == 0) {
    drop(fd);
    return;
  }
  if (n < 0) {
    if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) drop(fd);
    return;
  }
  c->in_len += (size_t)n;
  size_t used = 0;
  for (;;) {
    char* end = memmem(c->in + used, c->in_len - used, "\r\n\r\n", 4);
    if (!end) break;
    used = (size_t)(end - c->in) + 4;
    if (c->out_len + sizeof kAnswer - 1 > kOutSize) {
      drop(fd);
      return;
    }
    memcpy(c->out + c->out_len, kAnswer, sizeof kAnswer - 1);
    c->out_len += sizeof kAnswer - 1;
  }
  memmove(c->in, c->in + used, c->in_len - used);
  c->in_len -= used;
  if (c->out_len && flush_out(fd, c) < 0) drop(fd);
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PORT (listens on 127.0.0.1)\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(lfd, (struct sockaddr*)&addr, sizeof addr) != 0 || listen(lfd, 1024) != 0) {
    perror("tiny_upstream: listen");
    return 1;
  }
  int spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
  epfd = epoll_create1(EPOLL_CLOEXEC);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev);
  struct epoll_event events[256];
  for (;;) {
    int ready = epoll_wait(epfd, events, 256, -1);
    for (int i = 0; i < ready; ++i) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        int cfd;
        while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0 ||
               errno == EMFILE || errno == ENFILE) {
          if (cfd < 0) {
            // Out of descriptors: shed the oldest pending connection with
            // the spare one, or epoll would report the listener forever.
            close(spare);
            if ((cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) close(cfd);
            spare = open("/dev/null", O_RDONLY | O_CLOEXEC);
            break;
          }
          if (cfd >= kMaxFds || !(conns[cfd] = calloc(1, sizeof(struct conn)))) {
            close(cfd);
            continue;
          }
          setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
          epoll_ctl(epfd, EPOLL_CTL_ADD, cfd, &cev);
        }
        continue;
      }
      if (!conns[fd]) continue;
      if (events[i].events & (EPOLLERR | EPOLLHUP)) {
        drop(fd);
        continue;
      }
      if ((events[i].events & EPOLLOUT) && flush_out(fd, conns[fd]) < 0) {
        drop(fd);
        continue;
      }
      if (events[i].events & EPOLLIN) on_readable(fd);
    }
  }
}
