/* proc.c: what knibd reads of other processes in /proc. */
#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int64_t
proc_start_time (pid_t pid)
{
  char path[64], buf[1024];
  FILE *fp;
  size_t n;
  char *p, *end;
  unsigned long long start = 0;
  char state;

  if (pid <= 0)
    return -1;
  snprintf (path, sizeof path, "/proc/%d/stat", (int) pid);
  fp = fopen (path, "re");
  if (fp == NULL)
    return -1;
  n = fread (buf, 1, sizeof buf - 1, fp);
  fclose (fp);
  buf[n] = '\0';
  /* "PID (COMM) STATE ...": COMM may hold anything, so look for the
   * last ')'; start time is field 22, the 20th after COMM. */
  p = strrchr (buf, ')');
  if (p == NULL || sscanf (p + 1, " %c", &state) != 1 || state == 'Z'
      || state == 'X')
    return -1;
  p += 2;
  for (int field = 3; field < 22; field++) {
    p = strchr (p, ' ');
    if (p == NULL)
      return -1;
    p++;
  }
  start = strtoull (p, &end, 10);
  if (end == p)
    return -1;
  return (int64_t) start;
}
