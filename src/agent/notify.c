/* SPDX-License-Identifier: Apache-2.0 */
/* notify.c: the datagram socket on which the libvirt hook tells knibd of
 * domain starts and stops; each notice becomes a DOMAIN_STATE_CHANGE
 * event for the clients, and holds or releases the domain's jobs. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/error.h"
#include "common/util.h"
#include "internal.h"

int
notify_open (const char *path)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  int fd, on = 1;

  if (strlen (path) >= sizeof addr.sun_path) {
    set_error (ENAMETOOLONG, "notice socket '%s'", path);
    return -1;
  }
  strcpy (addr.sun_path, path);
  fd = socket (AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd == -1) {
    set_error (errno, "notice socket '%s'", path);
    return -1;
  }
  unlink (path); /* left by a knibd that was killed */
  if (setsockopt (fd, SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == -1
      || bind (fd, (struct sockaddr *) &addr, sizeof addr) == -1
      || chmod (path, 0600) == -1) {
    set_error (errno, "notice socket '%s'", path);
    close (fd);
    return -1;
  }
  return fd;
}

/* "running NAME" or "stopped NAME": -1 when it is neither. */
static int
notice_parse (char *text, const char **state, const char **name)
{
  char *sp = strchr (text, ' ');

  if (sp == NULL)
    return -1;
  *sp = '\0';
  *state = text;
  *name = sp + 1;
  if (strcmp (*state, "running") != 0 && strcmp (*state, "stopped") != 0)
    return -1;
  return name_is_valid (*name) ? 0 : -1;
}

void
notify_read (struct agent *a, int fd)
{
  for (;;) {
    char buf[256];
    union {
      struct cmsghdr align;
      char space[CMSG_SPACE (sizeof (struct ucred))];
    } control;
    struct iovec iov = { .iov_base = buf, .iov_len = sizeof buf - 1 };
    struct msghdr msg = { .msg_iov = &iov,
                          .msg_iovlen = 1,
                          .msg_control = control.space,
                          .msg_controllen = sizeof control.space };
    struct cmsghdr *c;
    const struct ucred *cred = NULL;
    const char *state, *name;
    ssize_t n = recvmsg (fd, &msg, MSG_DONTWAIT | MSG_TRUNC);

    if (n < 0)
      return;
    for (c = CMSG_FIRSTHDR (&msg); c != NULL; c = CMSG_NXTHDR (&msg, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS)
        cred = (const struct ucred *) CMSG_DATA (c);
    if (cred == NULL || cred->uid != 0) {
      fprintf (stderr, "knibd: ignored a notice from uid %d (not root)\n",
               cred ? (int) cred->uid : -1);
      continue;
    }
    if ((size_t) n >= sizeof buf) {
      fprintf (stderr, "knibd: ignored a notice of %zd bytes\n", n);
      continue;
    }
    buf[n] = '\0';
    if (memchr (buf, '\0', n) != NULL
        || notice_parse (buf, &state, &name) == -1) {
      fprintf (stderr, "knibd: ignored a malformed notice\n");
      continue;
    }
    fprintf (stderr, "knibd: domain '%s' %s\n", name, state);
    a->emit (a, "DOMAIN_STATE_CHANGE",
             json_pack ("{s:s, s:s}", "domain", name, "state", state));
    if (strcmp (state, "stopped") == 0)
      runner_domain_stopped (a, name);
    else
      runner_domain_started (a, name);
  }
}
