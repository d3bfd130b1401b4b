// What a system call and one small send cost on this host, the send alone
// and in an io_uring batch
// (docs/benchmarks.md, "Sends in batches"). N loopback TCP connections;
// each round sends 200 bytes on every one, first with one send() each, then
// with one io_uring_enter for all N (MSG_DONTWAIT, as src/http/send_batch.cpp
// sends), draining the receivers in between (not timed). Then what a
// server's read of the next request costs when nothing is there yet: a
// recv() that fails (EAGAIN), against a recv with MSG_PEEK added to the
// batch after each send (send_batch.h's peek): the batch with peeks minus
// the batch without, per connection.
//
//   cc -O2 bench/send_cost.c -o /tmp/send_cost -luring && /tmp/send_cost [N...]
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e9 + t.tv_nsec;
}

static void run(int n) {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(listener, (struct sockaddr*)&a, sizeof a) || listen(listener, 256) ||
      getsockname(listener, (struct sockaddr*)&a, &len)) {
    perror("listen");
    exit(1);
  }
  int* c = calloc(n, sizeof(int));
  int* s = calloc(n, sizeof(int));
  for (int i = 0; i < n; i++) {
    c[i] = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(c[i], (struct sockaddr*)&a, sizeof a)) {
      perror("connect");
      exit(1);
    }
    s[i] = accept(listener, 0, 0);
    int one = 1;
    setsockopt(c[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(c[i], F_SETFL, O_NONBLOCK);
  }
  struct io_uring ring;
  if (n > 128) {  /* a send and a peek each: 2n operations in one ring */
    fprintf(stderr, "at most 128 connections\n");
    exit(1);
  }
  if (io_uring_queue_init(256, &ring, 0)) {
    fprintf(stderr, "io_uring unavailable\n");
    exit(1);
  }
  char out[200], in[4096];
  memset(out, 'x', sizeof out);
  const int rounds = 3000;
  double plain = 0, batched = 0, failed = 0, peeked = 0;
  char peek;
  for (int r = 0; r < rounds; r++) {
    double t0 = now_ns();
    for (int i = 0; i < n; i++) send(c[i], out, sizeof out, MSG_DONTWAIT | MSG_NOSIGNAL);
    plain += now_ns() - t0;
    for (int i = 0; i < n; i++) recv(s[i], in, sizeof in, 0);
    t0 = now_ns();
    for (int i = 0; i < n; i++)
      io_uring_prep_send(io_uring_get_sqe(&ring), c[i], out, sizeof out, MSG_DONTWAIT | MSG_NOSIGNAL);
    io_uring_submit(&ring);
    struct io_uring_cqe* cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      if (cqe->res != (int)sizeof out) fprintf(stderr, "short send: %d\n", cqe->res);
      seen++;
    }
    io_uring_cq_advance(&ring, seen);
    batched += now_ns() - t0;
    for (int i = 0; i < n; i++) recv(s[i], in, sizeof in, 0);
    t0 = now_ns();
    for (int i = 0; i < n; i++)
      if (recv(c[i], in, sizeof in, MSG_DONTWAIT) >= 0) fprintf(stderr, "recv found bytes\n");
    failed += now_ns() - t0;
    t0 = now_ns();
    for (int i = 0; i < n; i++) {
      io_uring_prep_send(io_uring_get_sqe(&ring), c[i], out, sizeof out, MSG_DONTWAIT | MSG_NOSIGNAL);
      io_uring_prep_recv(io_uring_get_sqe(&ring), c[i], &peek, 1, MSG_PEEK | MSG_DONTWAIT);
    }
    io_uring_submit(&ring);
    seen = 0;
    io_uring_for_each_cqe(&ring, head, cqe) {
      if ((seen & 1) && cqe->res != -EAGAIN) fprintf(stderr, "peek: %d\n", cqe->res);
      seen++;
    }
    io_uring_cq_advance(&ring, seen);
    peeked += now_ns() - t0;
    for (int i = 0; i < n; i++) recv(s[i], in, sizeof in, 0);
  }
  printf("%3d connections: send() %5.0f ns each, io_uring batch %5.0f ns each (%.2fx)\n", n,
         plain / rounds / n, batched / rounds / n, plain / batched);
  printf("%3d connections: a recv() that fails %5.0f ns each, a peek in the batch %5.0f ns each\n",
         n, failed / rounds / n, (peeked - batched) / rounds / n);
  io_uring_queue_exit(&ring);
  for (int i = 0; i < n; i++) close(c[i]), close(s[i]);
  close(listener);
  free(c);
  free(s);
}

// The cost of entering the kernel and leaving it, doing nothing there.
static void null_syscall(void) {
  const int calls = 1000000;
  double t0 = now_ns();
  for (int i = 0; i < calls; i++) syscall(SYS_getppid);
  printf("null system call (getppid through syscall()): %.0f ns\n", (now_ns() - t0) / calls);
}

int main(int argc, char** argv) {
  null_syscall();
  if (argc < 2) {
    int sizes[] = {1, 2, 4, 8, 16, 32};
    for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++) run(sizes[i]);
  }
  for (int i = 1; i < argc; i++) run(atoi(argv[i]));
  return 0;
}
