/* SPDX-License-Identifier: Apache-2.0 */
/* io.c: what the QMP and the guest agent clients share on the socket. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>

#include "common/util.h"
#include "internal.h"

/* Send all of text, with pass_fd (unless -1) attached to the first
 * byte that goes. */
static int
send_text (int fd, int pass_fd, const char *text, size_t len, int64_t deadline)
{
  struct pollfd pfd = { .fd = fd, .events = POLLOUT };
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
    int r = poll (&pfd, 1, deadline_remaining_ms (deadline));

    if (r == -1 && errno == EINTR)
      continue;
    if (r == 0)
      errno = ETIMEDOUT;
    if (r <= 0)
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
    n = sendmsg (fd, &msg, MSG_NOSIGNAL);
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
qmp_send_all (int fd, const char *text, size_t len, int64_t deadline)
{
  return send_text (fd, -1, text, len, deadline);
}

int
qmp_send_with_fd (int fd, int pass_fd, const char *text, size_t len,
                  int64_t deadline)
{
  return send_text (fd, pass_fd, text, len, deadline);
}
