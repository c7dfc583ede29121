/* SPDX-License-Identifier: Apache-2.0 */
/* progress.c: a one-line progress bar on a terminal, silence otherwise. */
#include <config.h>

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
  char label[64];
  int64_t started;   /* when label started, ms */
  int64_t last_draw; /* ms */
};

struct progress *
progress_new (bool enabled)
{
  struct progress *p = calloc (1, sizeof *p);

  if (p != NULL)
    p->on = enabled && isatty (STDERR_FILENO);
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

void
progress_update (struct progress *p, const char *label, uint64_t done,
                 uint64_t total)
{
  char bar[BAR_WIDTH + 1], sdone[32], stotal[32], srate[32], eta[32];
  int64_t now = monotonic_ms ();
  double secs, rate;
  size_t fill;

  if (p == NULL || !p->on)
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
  free (p);
}
