/* SPDX-License-Identifier: Apache-2.0 */
/* agent-raw.c: for the knibd tests, send raw bytes to its socket: the
 * greeting is printed, then standard input is sent as it is (after
 * qmp_capabilities unless -n), the sending side is shut, and every line
 * knibd sends back is printed until it closes or 20 s pass.  With -d
 * PATH TEXT..., each TEXT is one datagram to PATH (the hook's notices). */
#include <config.h>

#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* -d PATH TEXT...: each TEXT as one datagram to PATH. */
static int
send_datagrams (int argc, char **argv)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  int fd = socket (AF_UNIX, SOCK_DGRAM, 0);

  if (fd == -1 || strlen (argv[0]) >= sizeof addr.sun_path)
    return 1;
  strcpy (addr.sun_path, argv[0]);
  for (int i = 1; i < argc; i++)
    if (sendto (fd, argv[i], strlen (argv[i]), 0, (struct sockaddr *) &addr,
                sizeof addr)
        == -1) {
      perror (argv[0]);
      return 1;
    }
  close (fd);
  return 0;
}

int
main (int argc, char **argv)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  bool negotiate = true;
  char buf[65536];
  ssize_t n;
  int fd;

  if (argc > 2 && strcmp (argv[1], "-d") == 0)
    return send_datagrams (argc - 2, argv + 2);
  if (argc > 1 && strcmp (argv[1], "-n") == 0) {
    negotiate = false;
    argc--;
    argv++;
  }
  if (argc != 2 || strlen (argv[1]) >= sizeof addr.sun_path) {
    fprintf (stderr, "usage: agent-raw [-n] SOCKET <INPUT\n");
    return 2;
  }
  strcpy (addr.sun_path, argv[1]);
  fd = socket (AF_UNIX, SOCK_STREAM, 0);
  if (fd == -1 || connect (fd, (struct sockaddr *) &addr, sizeof addr) == -1) {
    perror (argv[1]);
    return 1;
  }
  if (negotiate) {
    const char *cap = "{\"execute\": \"qmp_capabilities\"}\n";

    /* knibd may have refused the peer and closed already: read on. */
    if (send (fd, cap, strlen (cap), MSG_NOSIGNAL) != (ssize_t) strlen (cap))
      goto read_replies;
  }
  while ((n = read (0, buf, sizeof buf)) > 0)
    for (ssize_t done = 0; done < n;) {
      ssize_t w = send (fd, buf + done, n - done, MSG_NOSIGNAL);

      if (w <= 0)
        goto read_replies; /* knibd closed: print what it said */
      done += w;
    }
read_replies:
  shutdown (fd, SHUT_WR);
  for (;;) {
    struct pollfd pfd = { .fd = fd, .events = POLLIN };

    if (poll (&pfd, 1, 20000) <= 0)
      break;
    n = read (fd, buf, sizeof buf);
    if (n <= 0)
      break;
    fwrite (buf, 1, n, stdout);
  }
  close (fd);
  return 0;
}
