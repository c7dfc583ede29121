/* SPDX-License-Identifier: Apache-2.0 */
/* io.c: what the QMP and the guest agent clients share on the socket. */
#include <config.h>

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include "common/util.h"
#include "internal.h"

int
qmp_send_all (int fd, const char *text, size_t len, int64_t deadline)
{
  struct pollfd pfd = { .fd = fd, .events = POLLOUT };
  size_t done = 0;

  while (done < len) {
    ssize_t n;
    int r = poll (&pfd, 1, deadline_remaining_ms (deadline));

    if (r == -1 && errno == EINTR)
      continue;
    if (r == 0)
      errno = ETIMEDOUT;
    if (r <= 0)
      return QMP_SEND_WAIT_FAILED;
    n = send (fd, text + done, len - done, MSG_NOSIGNAL);
    if (n == -1 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (n == -1)
      return QMP_SEND_FAILED;
    done += n;
  }
  return 0;
}
