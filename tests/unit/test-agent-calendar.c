/* SPDX-License-Identifier: Apache-2.0 */
/* test-agent-calendar.c: knibd's schedule calendars: parsing, and the
 * last and next times they fire (in UTC, so the results are fixed). */
#include <config.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "agent/internal.h"
#include "common/error.h"

/* 2026-12-02 (a Wednesday) 13:37:42 UTC */
#define NOW ((time_t) 1796218662)

static void
calendar_parse_accepts_the_documented_forms (void **state)
{
  struct calendar c;

  assert_int_equal (calendar_parse ("minutely", &c), 0);
  assert_int_equal (c.kind, CAL_MINUTELY);
  assert_int_equal (calendar_parse ("weekly", &c), 0);
  assert_int_equal (c.kind, CAL_WEEKLY);
  assert_int_equal (calendar_parse ("02:30", &c), 0);
  assert_int_equal (c.kind, CAL_DAILY);
  assert_int_equal (c.hour, 2);
  assert_int_equal (c.minute, 30);
  assert_int_equal (calendar_parse ("*-*-* 23:05:07", &c), 0);
  assert_int_equal (c.hour, 23);
  assert_int_equal (c.second, 7);
}

static void
calendar_parse_refuses_the_rest (void **state)
{
  static const char *const bad[]
    = { "",       "yearly", "24:00", "12:60",  "1:2:3:4",
        "12:00 ", "*-*-*",  "-1:00", "12:00x", "*-*-* 99:00" };
  struct calendar c;

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    assert_int_equal (calendar_parse (bad[i], &c), -1);
    assert_non_null (strstr (get_error (), "calendar '"));
  }
}

static void
calendar_prev_and_next (void **state)
{
  struct calendar c;

  setenv ("TZ", "UTC", 1);
  tzset ();
  assert_int_equal (calendar_parse ("minutely", &c), 0);
  assert_int_equal (calendar_prev (&c, NOW), NOW - 42);
  assert_int_equal (calendar_next (&c, NOW), NOW + 18);
  assert_int_equal (calendar_parse ("hourly", &c), 0);
  assert_int_equal (calendar_prev (&c, NOW), NOW - 37 * 60 - 42);
  assert_int_equal (calendar_next (&c, NOW), NOW + 22 * 60 + 18);
  /* Later today: the last was yesterday. */
  assert_int_equal (calendar_parse ("14:00", &c), 0);
  assert_int_equal (calendar_prev (&c, NOW), NOW + 22 * 60 + 18 - 86400);
  assert_int_equal (calendar_next (&c, NOW), NOW + 22 * 60 + 18);
  assert_int_equal (calendar_parse ("daily", &c), 0);
  assert_int_equal (calendar_prev (&c, NOW), NOW - 13 * 3600 - 37 * 60 - 42);
  /* Monday 2026-11-30 00:00. */
  assert_int_equal (calendar_parse ("weekly", &c), 0);
  assert_int_equal (calendar_prev (&c, NOW), (time_t) 1795996800);
  assert_int_equal (calendar_next (&c, NOW), (time_t) 1795996800 + 7 * 86400);
  /* Exactly on time is due now. */
  assert_int_equal (calendar_parse ("13:37:42", &c), 0);
  assert_int_equal (calendar_prev (&c, NOW), NOW);
}

int
main (void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test (calendar_parse_accepts_the_documented_forms),
    cmocka_unit_test (calendar_parse_refuses_the_rest),
    cmocka_unit_test (calendar_prev_and_next),
  };

  return cmocka_run_group_tests (tests, NULL, NULL);
}
