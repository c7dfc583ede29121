/* SPDX-License-Identifier: Apache-2.0 */
/* progress.c: a one-line progress bar on a terminal, silence otherwise;
 * for knibd, the figures in the file $KNIB_PROGRESS_FILE names. */
#include <config.h>

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"
#include "progress.h"

#define BAR_WIDTH 24
#define REDRAW_MS 100

struct progress {
  bool on;
  int fd;             /* $KNIB_PROGRESS_FILE, or -1 */
  int64_t last_write; /* ms */
  bool unwritten;     /* figures newer than the file's */
  char file_label[64];
  uint64_t file_done, file_total;
  char label[64];
  int64_t started;   /* when label started, ms */
  int64_t last_draw; /* ms */
};

struct progress *
progress_new (bool enabled)
{
  struct progress *p = calloc (1, sizeof *p);

  const char *file = getenv (PROGRESS_FILE_ENV);

  if (p == NULL)
    return NULL;
  p->on = enabled && isatty (STDERR_FILENO);
  p->fd = -1;
  /* knibd reads the figures of its jobs whatever their output is. */
  if (file != NULL && file[0] != '\0')
    p->fd = open (file, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  return p;
}

void
progress_format_bytes (uint64_t n, char *buf, size_t len)
{
  static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB", "PiB" };
  double v = n;
  size_t u = 0;

  while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
    v /= 1024;
    u++;
  }
  if (u == 0)
    snprintf (buf, len, "%llu B", (unsigned long long) n);
  else
    snprintf (buf, len, "%.1f %s", v, units[u]);
}

/* One line, rewritten in place: {"label":L,"done":N,"total":M}. */
static void
progress_write_file (struct progress *p, const char *label, uint64_t done,
                     uint64_t total, int64_t now)
{
  char line[256], safe[64];
  size_t i, k = 0;
  int len;

  if (label != p->file_label)
    snprintf (p->file_label, sizeof p->file_label, "%s", label);
  p->file_done = done;
  p->file_total = total;
  p->unwritten = true;
  if (now != 0 && now - p->last_write < REDRAW_MS * 2 && done < total)
    return; /* written later, or by progress_free (now 0) */
  p->last_write = now;
  p->unwritten = false;
  /* Disk names are plain words; keep the line JSON whatever they are. */
  for (i = 0; label[i] != '\0' && k + 1 < sizeof safe; i++)
    if (label[i] != '"' && label[i] != '\\' && (unsigned char) label[i] >= 32)
      safe[k++] = label[i];
  safe[k] = '\0';
  len = snprintf (line, sizeof line,
                  "{\"label\":\"%s\",\"done\":%" PRIu64 ",\"total\":%" PRIu64
                  "}\n",
                  safe, done, total);
  if (len > 0 && (size_t) len < sizeof line
      && pwrite (p->fd, line, len, 0) == len)
    (void) ftruncate (p->fd, len);
}

void
progress_update (struct progress *p, const char *label, uint64_t done,
                 uint64_t total)
{
  char bar[BAR_WIDTH + 1], sdone[32], stotal[32], srate[32], eta[32];
  int64_t now = monotonic_ms ();
  double secs, rate;
  size_t fill;

  if (p == NULL)
    return;
  if (p->fd != -1)
    progress_write_file (p, label, done, total, now);
  if (!p->on)
    return;
  if (strcmp (p->label, label) != 0) {
    snprintf (p->label, sizeof p->label, "%s", label);
    p->started = now;
    p->last_draw = 0;
  }
  if (now - p->last_draw < REDRAW_MS && done < total)
    return;
  p->last_draw = now;
  fill = total ? (size_t) ((double) done / total * BAR_WIDTH) : BAR_WIDTH;
  if (fill > BAR_WIDTH)
    fill = BAR_WIDTH;
  memset (bar, '#', fill);
  memset (bar + fill, ' ', BAR_WIDTH - fill);
  bar[BAR_WIDTH] = '\0';
  secs = (now - p->started) / 1000.0;
  rate = secs > 0 ? done / secs : 0;
  progress_format_bytes (done, sdone, sizeof sdone);
  progress_format_bytes (total, stotal, sizeof stotal);
  progress_format_bytes ((uint64_t) rate, srate, sizeof srate);
  if (rate > 0 && total > done) {
    uint64_t left = (uint64_t) ((total - done) / rate);
    snprintf (eta, sizeof eta, "ETA %llu:%02llu",
              (unsigned long long) (left / 60),
              (unsigned long long) (left % 60));
  }
  else
    snprintf (eta, sizeof eta, "%s", done >= total ? "done" : "");
  fprintf (stderr, "\r\033[K%-6s [%s] %s/%s  %s/s  %s", label, bar, sdone,
           stotal, srate, eta);
  fflush (stderr);
}

void
progress_free (struct progress *p)
{
  if (p == NULL)
    return;
  if (p->on && p->label[0] != '\0')
    fputs ("\r\033[K", stderr);
  if (p->fd != -1 && p->unwritten)
    progress_write_file (p, p->file_label, p->file_done, p->file_total, 0);
  if (p->fd != -1)
    close (p->fd);
  free (p);
}
