/* SPDX-License-Identifier: Apache-2.0 */
/* schedule.c: schedules for hosts without a management plane: a backup
 * of a VM on a calendar, its retention run after each backup, and a run
 * missed while the agent was down caught up once. */
#include <config.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/cleanup.h"
#include "common/error.h"
#include "common/testhook.h"
#include "common/util.h"
#include "internal.h"

int
calendar_parse (const char *text, struct calendar *c)
{
  int h, m, s = 0, n = 0;
  const char *t = text;

  memset (c, 0, sizeof *c);
  if (strcmp (text, "minutely") == 0)
    c->kind = CAL_MINUTELY;
  else if (strcmp (text, "hourly") == 0)
    c->kind = CAL_HOURLY;
  else if (strcmp (text, "daily") == 0)
    c->kind = CAL_DAILY;
  else if (strcmp (text, "weekly") == 0)
    c->kind = CAL_WEEKLY;
  else {
    /* HH:MM[:SS], or systemd's "*-*-* HH:MM[:SS]" (every day). */
    if (strncmp (t, "*-*-* ", 6) == 0)
      t += 6;
    if ((sscanf (t, "%2d:%2d:%2d%n", &h, &m, &s, &n) != 3 || t[n] != '\0')
        && (s = 0, sscanf (t, "%2d:%2d%n", &h, &m, &n) != 2 || t[n] != '\0')) {
      set_error (0,
                 "calendar '%s': expected minutely, hourly, daily, "
                 "weekly, HH:MM or '*-*-* HH:MM'",
                 text);
      return -1;
    }
    if (h < 0 || h > 23 || m < 0 || m > 59 || s < 0 || s > 59) {
      set_error (0, "calendar '%s': no such time of day", text);
      return -1;
    }
    c->kind = CAL_DAILY;
    c->hour = h;
    c->minute = m;
    c->second = s;
  }
  return 0;
}

/* The local time tm moved by days days (mktime normalises it). */
static time_t
tm_days (struct tm tm, int days)
{
  tm.tm_mday += days;
  tm.tm_isdst = -1;
  return mktime (&tm);
}

time_t
calendar_prev (const struct calendar *c, time_t now)
{
  struct tm tm;
  time_t t;

  if (c->kind == CAL_MINUTELY)
    return now - now % 60;
  localtime_r (&now, &tm);
  tm.tm_sec = c->second;
  tm.tm_min = c->minute;
  switch (c->kind) {
  case CAL_MINUTELY:
    break;
  case CAL_HOURLY:
    tm.tm_min = 0;
    tm.tm_sec = 0;
    tm.tm_isdst = -1;
    return mktime (&tm);
  case CAL_DAILY:
    tm.tm_hour = c->hour;
    t = tm_days (tm, 0);
    return t <= now ? t : tm_days (tm, -1);
  case CAL_WEEKLY: /* Mondays at midnight */
    tm.tm_hour = 0;
    return tm_days (tm, -((tm.tm_wday + 6) % 7));
  }
  return now;
}

time_t
calendar_next (const struct calendar *c, time_t now)
{
  time_t prev = calendar_prev (c, now);
  struct tm tm;

  localtime_r (&prev, &tm);
  switch (c->kind) {
  case CAL_MINUTELY:
    return prev + 60;
  case CAL_HOURLY:
    tm.tm_hour++;
    tm.tm_isdst = -1;
    return mktime (&tm);
  case CAL_DAILY:
    return tm_days (tm, 1);
  case CAL_WEEKLY:
    return tm_days (tm, 7);
  }
  return prev;
}

/* The members of schedule-set that are the schedule's own; the others
 * are the backup's request. */
static bool
schedule_key (const char *key)
{
  return strcmp (key, "name") == 0 || strcmp (key, "calendar") == 0
         || strcmp (key, "keep-last") == 0 || strcmp (key, "keep-daily") == 0
         || strcmp (key, "keep-weekly") == 0;
}

int
schedule_set (struct agent *a, json_t *args)
{
  const char *name = json_string_value (json_object_get (args, "name"));
  const char *cal = json_string_value (json_object_get (args, "calendar"));
  json_auto_t *backup = json_object ();
  struct calendar c;
  const char *key;
  json_t *v;

  if (name == NULL || name_check ("schedule", name) == -1) {
    if (name == NULL)
      set_error (0, "missing argument 'name', a string");
    return -1;
  }
  if (cal == NULL) {
    set_error (0, "missing argument 'calendar', a string");
    return -1;
  }
  if (calendar_parse (cal, &c) == -1)
    return -1;
  json_object_foreach (args, key, v)
  {
    if (!schedule_key (key))
      json_object_set (backup, key, v);
    else if (strncmp (key, "keep-", 5) == 0
             && (!json_is_integer (v) || json_integer_value (v) < 0
                 || json_integer_value (v) > 100000)) {
      set_error (0, "argument '%s' must be an integer from 0 to 100000", key);
      return -1;
    }
  }
  if ((json_object_get (args, "keep-daily") != NULL
       || json_object_get (args, "keep-weekly") != NULL)
      && json_object_get (args, "keep-last") == NULL) {
    set_error (0, "retention needs 'keep-last' (with 'keep-daily' and "
                  "'keep-weekly' if wanted)");
    return -1;
  }
  if (runner_check (JOB_BACKUP, backup) == -1)
    return -1;
  if (store_schedule_put (a->store, name, args, (double) test_clock ()) == -1)
    return -1;
  fprintf (stderr, "knibd: schedule '%s' set: %s\n", name, cal);
  a->schedules = true;
  return 0;
}

/* The schedule's backup request: its backup's arguments, its name and
 * its retention (which runner.c queues after the backup). */
static json_t *
schedule_request (const char *name, const json_t *def)
{
  json_t *req = json_object ();
  const char *key;
  json_t *v;

  if (req == NULL)
    return NULL;
  json_object_foreach ((json_t *) def, key, v)
  {
    if (strcmp (key, "name") != 0 && strcmp (key, "calendar") != 0)
      json_object_set (req, key, v);
  }
  json_object_set_new (req, "schedule", json_string (name));
  return req;
}

json_t *
schedules_query (struct agent *a)
{
  json_t *arr = store_schedules (a->store);
  time_t now = test_clock ();
  json_t *s;
  size_t i;

  json_array_foreach (arr, i, s)
  {
    struct calendar c;
    const char *cal = json_string_value (
      json_object_get (json_object_get (s, "request"), "calendar"));

    if (cal != NULL && calendar_parse (cal, &c) == 0)
      json_object_set_new (s, "next-run",
                           json_real ((double) calendar_next (&c, now)));
  }
  return arr;
}

void
schedules_tick (struct agent *a)
{
  json_auto_t *arr = NULL;
  time_t now = test_clock ();
  json_t *s;
  size_t i;

  if (!a->schedules)
    return;
  arr = store_schedules (a->store);
  if (arr == NULL) {
    fprintf (stderr, "knibd: schedules: %s\n", get_error ());
    return;
  }
  a->schedules = json_array_size (arr) > 0;
  json_array_foreach (arr, i, s)
  {
    const char *name = json_string_value (json_object_get (s, "name"));
    const json_t *def = json_object_get (s, "request");
    double last = json_real_value (json_object_get (s, "last-run"));
    struct calendar c;
    time_t due;
    json_t *req;

    if (calendar_parse (json_string_value (json_object_get (def, "calendar")),
                        &c)
        == -1)
      continue;
    due = calendar_prev (&c, now);
    /* Due since it last ran (or was set): run once, however many runs
     * were missed while the agent was down. */
    if ((double) due <= last)
      continue;
    req = schedule_request (name, def);
    if (req == NULL || store_schedule_ran (a->store, name, (double) now) == -1
        || runner_submit_checked (a, JOB_BACKUP, req) == -1)
      fprintf (stderr, "knibd: schedule '%s': %s\n", name, get_error ());
    else
      fprintf (stderr, "knibd: schedule '%s': backup of '%s' queued\n", name,
               json_string_value (json_object_get (def, "vm")));
    json_decref (req);
  }
}
