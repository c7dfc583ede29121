/* SPDX-License-Identifier: Apache-2.0 */
/* id.c: backup ids that sort by time, RFC 3339 times, enum names. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/error.h"
#include "internal.h"

/* Ids and times stay within four-digit years. */
#define TIME_MIN INT64_C (0)
#define TIME_MAX INT64_C (253402300799) /* 9999-12-31T23:59:59Z */

void
chain_string_vector_release (chain_string_vector *v)
{
  for (size_t i = 0; i < v->len; i++)
    free (v->ptr[i]);
  chain_string_vector_reset (v);
}

static void
to_tm (int64_t t, struct tm *tm)
{
  time_t tt;

  if (t < TIME_MIN)
    t = TIME_MIN;
  if (t > TIME_MAX)
    t = TIME_MAX;
  tt = (time_t) t;
  gmtime_r (&tt, tm);
}

void
chain_id_make (int64_t t, unsigned seq, char out[CHAIN_ID_MAX])
{
  struct tm tm;
  size_t n;

  to_tm (t, &tm);
  n = strftime (out, CHAIN_ID_MAX, "%Y%m%dT%H%M%SZ", &tm);
  if (seq > 1)
    snprintf (out + n, CHAIN_ID_MAX - n, "-%u",
              seq > CHAIN_ID_SEQ_MAX ? CHAIN_ID_SEQ_MAX : seq);
}

void
chain_time_format (int64_t t, char out[CHAIN_TIME_MAX])
{
  struct tm tm;

  to_tm (t, &tm);
  strftime (out, CHAIN_TIME_MAX, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static bool
all_digits (const char *s, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (s[i] < '0' || s[i] > '9')
      return false;
  return true;
}

static int
number (const char *s, size_t n)
{
  int v = 0;

  for (size_t i = 0; i < n; i++)
    v = v * 10 + (s[i] - '0');
  return v;
}

/* Seconds since the epoch from broken-down UTC fields, or -1 when they
 * are not a real date and time. */
static int64_t
from_fields (int year, int mon, int day, int hour, int min, int sec)
{
  struct tm tm = { .tm_year = year - 1900,
                   .tm_mon = mon - 1,
                   .tm_mday = day,
                   .tm_hour = hour,
                   .tm_min = min,
                   .tm_sec = sec };
  struct tm back;
  time_t t;
  const int want_year = tm.tm_year, want_mon = tm.tm_mon, want_day = tm.tm_mday;

  if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59
      || sec > 59)
    return -1;
  t = timegm (&tm); /* normalizes tm: compare with the fields given */
  if (t == (time_t) -1)
    return -1;
  gmtime_r (&t, &back);
  if (back.tm_year != want_year || back.tm_mon != want_mon
      || back.tm_mday != want_day)
    return -1; /* 31 February */
  return t;
}

int
chain_id_split (const char *id, int64_t *t, unsigned *seq)
{
  size_t n = strlen (id), sn;
  int64_t v;

  if (n < 16 || !all_digits (id, 8) || id[8] != 'T' || !all_digits (id + 9, 6)
      || id[15] != 'Z')
    return -1;
  v = from_fields (number (id, 4), number (id + 4, 2), number (id + 6, 2),
                   number (id + 9, 2), number (id + 11, 2),
                   number (id + 13, 2));
  if (v < 0)
    return -1;
  *t = v;
  *seq = 1;
  if (n == 16)
    return 0;
  sn = n - 17;
  if (id[16] != '-' || sn < 1 || sn > 4 || !all_digits (id + 17, sn)
      || id[17] == '0' || number (id + 17, sn) < 2)
    return -1;
  *seq = (unsigned) number (id + 17, sn);
  return 0;
}

bool
chain_id_is_valid (const char *id)
{
  int64_t t;
  unsigned seq;

  return id != NULL && chain_id_split (id, &t, &seq) == 0;
}

int
chain_id_compare (const char *a, const char *b)
{
  int64_t ta, tb;
  unsigned sa, sb;

  if (chain_id_split (a, &ta, &sa) == -1 || chain_id_split (b, &tb, &sb) == -1)
    return strcmp (a, b);
  if (ta != tb)
    return ta < tb ? -1 : 1;
  if (sa != sb)
    return sa < sb ? -1 : 1;
  return 0;
}

int
chain_time_parse (const char *s, int64_t *t)
{
  int64_t v;

  if (strlen (s) != 20 || !all_digits (s, 4) || s[4] != '-'
      || !all_digits (s + 5, 2) || s[7] != '-' || !all_digits (s + 8, 2)
      || s[10] != 'T' || !all_digits (s + 11, 2) || s[13] != ':'
      || !all_digits (s + 14, 2) || s[16] != ':' || !all_digits (s + 17, 2)
      || s[19] != 'Z')
    goto bad;
  v = from_fields (number (s, 4), number (s + 5, 2), number (s + 8, 2),
                   number (s + 11, 2), number (s + 14, 2), number (s + 17, 2));
  if (v < 0)
    goto bad;
  *t = v;
  return 0;
bad:
  set_error (-EINVAL, "'%s' is not a UTC time like 2026-11-23T20:30:15Z", s);
  return -1;
}

const char *
chain_kind_name (enum chain_kind kind)
{
  switch (kind) {
  case CHAIN_KIND_FULL:
    return "full";
  case CHAIN_KIND_INCREMENTAL:
    return "incremental";
  case CHAIN_KIND_ISOLATED:
    return "isolated";
  }
  return "?";
}

const char *
chain_state_name (enum chain_state state)
{
  switch (state) {
  case CHAIN_STATE_COMPLETE:
    return "complete";
  case CHAIN_STATE_REMOVED:
    return "removed";
  }
  return "?";
}

const char *
chain_compression_name (enum chain_compression c)
{
  switch (c) {
  case CHAIN_COMPRESSION_NONE:
    return "none";
  case CHAIN_COMPRESSION_ZLIB:
    return "zlib";
  case CHAIN_COMPRESSION_ZSTD:
    return "zstd";
  }
  return "?";
}

int
chain_compression_parse (const char *s, enum chain_compression *c)
{
  if (strcmp (s, "none") == 0)
    *c = CHAIN_COMPRESSION_NONE;
  else if (strcmp (s, "zlib") == 0)
    *c = CHAIN_COMPRESSION_ZLIB;
  else if (strcmp (s, "zstd") == 0)
    *c = CHAIN_COMPRESSION_ZSTD;
  else {
    set_error (-EINVAL, "unknown compression '%s' (known: none, zlib, zstd)",
               s);
    return -1;
  }
  return 0;
}

bool
chain_is_temp_name (const char *name)
{
  return strncmp (name, CHAIN_TEMP_PREFIX, strlen (CHAIN_TEMP_PREFIX)) == 0;
}
