/* SPDX-License-Identifier: Apache-2.0 */
/* peer.c: why a QMP socket is silent: a stopped QEMU, or a busy socket. */
#include <config.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>

#include "common/error.h"
#include "internal.h"

/* Ask the kernel (sock_diag) for the peer of the unix socket fd.  Until
 * the listener accepts the connection, the peer is a socket in its
 * queue, which has no inode yet.  1 accepted, 0 waiting in the queue,
 * -1 unknown (no unix_diag in this kernel). */
static int
unix_accepted (int fd)
{
  struct {
    struct nlmsghdr nlh;
    struct unix_diag_req req;
  } msg = {
    .nlh = { .nlmsg_len = sizeof msg,
             .nlmsg_type = SOCK_DIAG_BY_FAMILY,
             .nlmsg_flags = NLM_F_REQUEST },
    .req = { .sdiag_family = AF_UNIX,
             .udiag_states = UINT32_MAX,
             .udiag_show = UDIAG_SHOW_PEER,
             .udiag_cookie = { ~0u, ~0u } }, /* no cookie */
  };
  union {
    struct nlmsghdr nlh;
    char bytes[8192];
  } buf;
  const struct unix_diag_msg *m;
  const struct rtattr *rta;
  struct stat st;
  ssize_t n;
  int nl, len, r = -1;

  if (fstat (fd, &st) == -1)
    return -1;
  msg.req.udiag_ino = st.st_ino;
  nl = socket (AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (nl == -1)
    return -1;
  if (send (nl, &msg, sizeof msg, 0) != (ssize_t) sizeof msg)
    goto out;
  n = recv (nl, &buf, sizeof buf, 0);
  if (n < (ssize_t) NLMSG_LENGTH (sizeof *m) || !NLMSG_OK (&buf.nlh, n)
      || buf.nlh.nlmsg_type != SOCK_DIAG_BY_FAMILY)
    goto out;
  m = NLMSG_DATA (&buf.nlh);
  len = buf.nlh.nlmsg_len - NLMSG_LENGTH (sizeof *m);
  for (rta = (const struct rtattr *) (m + 1); RTA_OK (rta, len);
       rta = RTA_NEXT (rta, len)) {
    if (rta->rta_type == UNIX_DIAG_PEER
        && RTA_PAYLOAD (rta) >= sizeof (uint32_t)) {
      uint32_t ino;

      memcpy (&ino, RTA_DATA (rta), sizeof ino);
      r = ino != 0;
      break;
    }
  }
out:
  close (nl);
  return r;
}

/* The process that listens on the socket fd is connected to is stopped
 * (SIGSTOP, a debugger): its pid, or 0. */
static pid_t
listener_stopped (int fd)
{
  struct ucred cred;
  socklen_t len = sizeof cred;
  char path[64], stat[512], *p;
  FILE *fp;
  size_t n;

  if (getsockopt (fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1
      || cred.pid <= 0)
    return 0;
  snprintf (path, sizeof path, "/proc/%d/stat", (int) cred.pid);
  fp = fopen (path, "re");
  if (fp == NULL)
    return 0;
  n = fread (stat, 1, sizeof stat - 1, fp);
  fclose (fp);
  stat[n] = '\0';
  /* "PID (COMM) STATE ...": COMM may hold anything, ')' too. */
  p = strrchr (stat, ')');
  if (p == NULL || p[1] != ' ')
    return 0;
  return p[2] == 'T' || p[2] == 't' ? cred.pid : 0;
}

int
qmp_peer_explain_silence (int fd, const char *path, bool greeting)
{
  pid_t pid = listener_stopped (fd);
  char sock[4200];

  if (path != NULL)
    snprintf (sock, sizeof sock, "the QMP socket '%s'", path);
  else
    snprintf (sock, sizeof sock, "the QMP socket");
  if (pid != 0) {
    set_error (-ETIMEDOUT,
               "QEMU (pid %d) behind %s is stopped: continue it with "
               "'kill -CONT %d'",
               (int) pid, sock, (int) pid);
    return 0;
  }
  if (greeting && unix_accepted (fd) == 0) {
    set_error (-EBUSY,
               "another client holds %s (QEMU serves one at a time): wait "
               "for it to finish, or give knib a QMP socket of its own",
               sock);
    return 0;
  }
  return -1;
}
