/* SPDX-License-Identifier: Apache-2.0 */
/* io.c: what the QMP and the guest agent clients share on the socket. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "common/util.h"
#include "internal.h"

/* A signal that arrives between the check of the flag and poll does not
 * interrupt poll: waiting in slices bounds how late it is seen. */
#define QMP_POLL_SLICE_MS 250

void
qmp_wait_init (struct qmp_wait *w, volatile sig_atomic_t *cancel,
               int timeout_ms)
{
  w->cancel = cancel;
  w->seen = cancel != NULL ? *cancel : 0;
  /* After the first signal, cleanup still talks to QEMU, but briefly:
   * QEMU may be the reason knib was interrupted. */
  if (w->seen != 0
      && (timeout_ms < 0 || timeout_ms > QMP_INTERRUPTED_TIMEOUT_MS))
    timeout_ms = QMP_INTERRUPTED_TIMEOUT_MS;
  w->timeout_ms = timeout_ms;
  w->deadline = deadline_after_ms (timeout_ms);
}

int
qmp_wait_poll (const struct qmp_wait *w, int fd, short events)
{
  struct pollfd pfd = { .fd = fd, .events = events };

  for (;;) {
    int left = deadline_remaining_ms (w->deadline), slice = left, r;

    if (w->cancel != NULL && *w->cancel != w->seen) {
      errno = EINTR;
      return -1;
    }
    if (w->cancel != NULL && (left < 0 || left > QMP_POLL_SLICE_MS))
      slice = QMP_POLL_SLICE_MS;
    r = poll (&pfd, 1, slice);
    if ((r == -1 && errno == EINTR) || (r == 0 && slice != left))
      continue;
    if (r == 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    return r;
  }
}

/* Send all of text, with pass_fd (unless -1) attached to the first
 * byte that goes. */
static int
send_text (int fd, int pass_fd, const char *text, size_t len,
           const struct qmp_wait *w)
{
  union {
    char buf[CMSG_SPACE (sizeof (int))];
    struct cmsghdr align;
  } control;
  size_t done = 0;

  while (done < len) {
    struct iovec iov
      = { .iov_base = (void *) (text + done), .iov_len = len - done };
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t n;
    if (qmp_wait_poll (w, fd, POLLOUT) == -1)
      return QMP_SEND_WAIT_FAILED;
    if (pass_fd >= 0) {
      struct cmsghdr *cmsg;

      memset (&control, 0, sizeof control);
      msg.msg_control = control.buf;
      msg.msg_controllen = sizeof control.buf;
      cmsg = CMSG_FIRSTHDR (&msg);
      cmsg->cmsg_level = SOL_SOCKET;
      cmsg->cmsg_type = SCM_RIGHTS;
      cmsg->cmsg_len = CMSG_LEN (sizeof (int));
      memcpy (CMSG_DATA (cmsg), &pass_fd, sizeof (int));
    }
    /* Never block in sendmsg: a peer that stops reading (a paused
     * guest's agent channel, a stuck QEMU) would hold knib there past
     * every deadline and signal.  What does not fit waits in poll. */
    n = sendmsg (fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n == -1 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n == -1)
      return QMP_SEND_FAILED;
    pass_fd = -1; /* it went with these bytes */
    done += n;
  }
  return 0;
}

int
qmp_send_all (int fd, const char *text, size_t len, const struct qmp_wait *w)
{
  return send_text (fd, -1, text, len, w);
}

int
qmp_send_with_fd (int fd, int pass_fd, const char *text, size_t len,
                  const struct qmp_wait *w)
{
  return send_text (fd, pass_fd, text, len, w);
}
