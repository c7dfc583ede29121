/* SPDX-License-Identifier: Apache-2.0 */
/* conf.c: defaults, parsing and validation of knib.conf. */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cleanup.h"
#include "conf.h"
#include "error.h"
#include "util.h"

enum key_type {
  KEY_INT,
  KEY_BOOL,
  KEY_RATIO,
  KEY_COMPRESS,
  KEY_GROUP,
  KEY_ACCEL
};

struct key {
  const char *name;
  enum key_type type;
  size_t offset;
  int64_t min, max;
};

#define OFF(f) offsetof (struct knib_config, f)

static const struct key keys[] = {
  { "chain-size", KEY_INT, OFF (chain_size), -1, 1000000 },
  { "timeout", KEY_INT, OFF (timeout), 1, 31536000 },
  { "compress", KEY_COMPRESS, OFF (compress), 0, 0 },
  { "compression-jobs", KEY_BOOL, OFF (compression_jobs), 0, 0 },
  { "compression-jobs-per-host", KEY_INT, OFF (compression_jobs_per_host), -1,
    1024 },
  { "compression-retries", KEY_INT, OFF (compression_retries), 0, 1000 },
  { "compression-retry-interval", KEY_INT, OFF (compression_retry_interval), 0,
    525600 },
  { "compression-timeout", KEY_INT, OFF (compression_timeout), 1, 31536000 },
  { "compression-min-free", KEY_RATIO, OFF (compression_min_free), 0, 1000000 },
  { "compression-threads", KEY_INT, OFF (compression_threads), 0, 1024 },
  { "compression-rate-limit", KEY_INT, OFF (compression_rate_limit), -1,
    1000000 },
  { "hook-start-wait", KEY_INT, OFF (hook_start_wait), 0, 3600 },
  { "validation-jobs-per-host", KEY_INT, OFF (validation_jobs_per_host), -1,
    1024 },
  { "backup-jobs-per-host", KEY_INT, OFF (backup_jobs_per_host), 0, 1024 },
  { "retry-interval-unit", KEY_INT, OFF (retry_interval_unit), 1, 60 },
  { "agent-group", KEY_GROUP, OFF (agent_group), 0, 0 },
  { "files-accel", KEY_ACCEL, OFF (files_accel), 0, 0 },
};

void
config_init (struct knib_config *cfg)
{
  memset (cfg, 0, sizeof *cfg);
  cfg->chain_size = 8;
  cfg->timeout = 43200;
  strcpy (cfg->compress, "none");
  cfg->compression_jobs = true;
  cfg->compression_jobs_per_host = 5;
  cfg->compression_retries = 2;
  cfg->compression_retry_interval = 60;
  cfg->compression_timeout = 28800;
  cfg->compression_min_free = 1.0;
  cfg->compression_threads = 0;
  cfg->compression_rate_limit = 0;
  cfg->hook_start_wait = 10;
  cfg->validation_jobs_per_host = 1;
  cfg->backup_jobs_per_host = 0;
  cfg->retry_interval_unit = 60;
  strcpy (cfg->files_accel, "auto");
}

static int
set_bool (const char *key, const char *value, bool *out)
{
  if (strcmp (value, "true") == 0 || strcmp (value, "yes") == 0
      || strcmp (value, "1") == 0)
    *out = true;
  else if (strcmp (value, "false") == 0 || strcmp (value, "no") == 0
           || strcmp (value, "0") == 0)
    *out = false;
  else {
    set_error (0, "%s: '%s' is not true or false", key, value);
    return -1;
  }
  return 0;
}

/* One of three words (each shorter than the field). */
static int
set_choice (const char *key, const char *value, const char *a, const char *b,
            const char *c, char *field)
{
  if (strcmp (value, a) != 0 && strcmp (value, b) != 0
      && strcmp (value, c) != 0) {
    set_error (-EINVAL, "%s: '%s' is not one of %s, %s, %s", key, value, a, b,
               c);
    return -1;
  }
  strcpy (field, value);
  return 0;
}

static int
set_key (struct knib_config *cfg, const struct key *k, const char *value)
{
  char *field = (char *) cfg + k->offset;

  switch (k->type) {
  case KEY_INT:
    return parse_int64 (k->name, value, k->min, k->max, (int64_t *) field);
  case KEY_RATIO:
    return parse_double (k->name, value, (double) k->min, (double) k->max,
                         (double *) field);
  case KEY_BOOL:
    return set_bool (k->name, value, (bool *) field);
  case KEY_COMPRESS:
    return set_choice (k->name, value, "none", "zstd", "zlib", field);
  case KEY_ACCEL:
    return set_choice (k->name, value, "auto", "kvm", "tcg", field);
  case KEY_GROUP:
    if (value[0] != '\0' && !name_is_valid (value)) {
      set_error (-EINVAL, "%s: '%s' is not a group name", k->name, value);
      return -1;
    }
    if (strlen (value) >= sizeof cfg->agent_group) {
      set_error (-EINVAL, "%s: '%s' is too long", k->name, value);
      return -1;
    }
    strcpy (field, value);
    return 0;
  }
  set_error (EINVAL, "%s: bad key type", k->name);
  return -1;
}

/* The VM of a per-VM key ("vm.NAME.compress"), or NULL when key is not
 * one (caller frees). */
static char *
vm_key_name (const char *key)
{
  static const char suffix[] = ".compress";
  size_t n = strlen (key);

  if (strncmp (key, "vm.", 3) != 0 || n < 3 + sizeof suffix
      || strcmp (key + n - (sizeof suffix - 1), suffix) != 0)
    return NULL;
  return strndup (key + 3, n - 3 - (sizeof suffix - 1));
}

static struct knib_vm_policy *
vm_policy_find (const struct knib_config *cfg, const char *vm)
{
  for (size_t i = 0; i < cfg->n_vm_policies; i++)
    if (strcmp (cfg->vm_policies[i].vm, vm) == 0)
      return (struct knib_vm_policy *) &cfg->vm_policies[i];
  return NULL;
}

/* vm.NAME.compress = none | zstd | zlib | deferred, or default (no
 * policy of its own). */
static int
set_vm_policy (struct knib_config *cfg, const char *key, const char *vm,
               const char *value)
{
  struct knib_vm_policy *p = vm_policy_find (cfg, vm);

  if (name_check ("vm", vm) == -1) {
    error_prepend ("%s", key);
    return -1;
  }
  if (strcmp (value, "default") == 0) {
    if (p != NULL)
      *p = cfg->vm_policies[--cfg->n_vm_policies];
    return 0;
  }
  if (strcmp (value, "none") != 0 && strcmp (value, "zstd") != 0
      && strcmp (value, "zlib") != 0 && strcmp (value, "deferred") != 0) {
    set_error (-EINVAL,
               "%s: '%s' is not one of none, zstd, zlib, deferred, default",
               key, value);
    return -1;
  }
  if (p == NULL && cfg->n_vm_policies == CONFIG_MAX_VM_POLICIES) {
    set_error (-ENOSPC, "%s: more than %d VMs have a policy", key,
               CONFIG_MAX_VM_POLICIES);
    return -1;
  }
  if (p == NULL) {
    p = &cfg->vm_policies[cfg->n_vm_policies++];
    strcpy (p->vm, vm); /* a valid name fits */
  }
  strcpy (p->compress, value);
  return 0;
}

const char *
config_vm_compress (const struct knib_config *cfg, const char *vm)
{
  const struct knib_vm_policy *p = vm ? vm_policy_find (cfg, vm) : NULL;

  return p ? p->compress : NULL;
}

char *
config_vm_key (const struct knib_config *cfg, size_t i)
{
  char *s = NULL;

  if (i >= cfg->n_vm_policies
      || asprintf (&s, "vm.%s.compress", cfg->vm_policies[i].vm) == -1)
    return NULL;
  return s;
}

int
config_set (struct knib_config *cfg, const char *key, const char *value)
{
  CLEANUP_FREE char *vm = vm_key_name (key);

  if (vm != NULL)
    return set_vm_policy (cfg, key, vm, value);
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (strcmp (keys[i].name, key) == 0)
      return set_key (cfg, &keys[i], value);
  set_error (0, "unknown setting '%s'", key);
  return -1;
}

const char *
config_key (size_t i)
{
  return i < sizeof keys / sizeof keys[0] ? keys[i].name : NULL;
}

static char *
key_format (const struct knib_config *cfg, const struct key *k)
{
  const char *field = (const char *) cfg + k->offset;
  char *s = NULL;
  int r = -1;

  switch (k->type) {
  case KEY_INT:
    r = asprintf (&s, "%" PRIi64, *(const int64_t *) field);
    break;
  case KEY_RATIO:
    r = asprintf (&s, "%g", *(const double *) field);
    break;
  case KEY_BOOL:
    r = asprintf (&s, "%s", *(const bool *) field ? "true" : "false");
    break;
  case KEY_COMPRESS:
  case KEY_GROUP:
  case KEY_ACCEL:
    r = asprintf (&s, "%s", field);
    break;
  }
  if (r == -1) {
    set_error (ENOMEM, "setting '%s'", k->name);
    return NULL;
  }
  return s;
}

char *
config_get (const struct knib_config *cfg, const char *key)
{
  CLEANUP_FREE char *vm = vm_key_name (key);
  const char *v;
  char *s;

  if (vm != NULL) {
    if (name_check ("vm", vm) == -1) {
      error_prepend ("%s", key);
      return NULL;
    }
    v = config_vm_compress (cfg, vm);
    s = strdup (v ? v : "default");
    if (s == NULL)
      set_error (ENOMEM, "setting '%s'", key);
    return s;
  }
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (strcmp (keys[i].name, key) == 0)
      return key_format (cfg, &keys[i]);
  set_error (0, "unknown setting '%s'", key);
  return NULL;
}

/* Trim leading and trailing blanks in place. */
static char *
trim (char *s)
{
  char *end;

  while (*s == ' ' || *s == '\t')
    s++;
  end = s + strlen (s);
  while (end > s
         && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n'
             || end[-1] == '\r'))
    *--end = '\0';
  return s;
}

static int
config_line (struct knib_config *cfg, char *line)
{
  char *hash, *eq, *key, *value;

  hash = strchr (line, '#');
  if (hash != NULL)
    *hash = '\0';
  line = trim (line);
  if (*line == '\0')
    return 0;
  eq = strchr (line, '=');
  if (eq == NULL) {
    set_error (0, "expected 'key = value'");
    return -1;
  }
  *eq = '\0';
  key = trim (line);
  value = trim (eq + 1);
  return config_set (cfg, key, value);
}

int
config_load (struct knib_config *cfg, const char *path, bool must_exist)
{
  CLEANUP_FCLOSE FILE *fp = NULL;
  CLEANUP_FREE char *line = NULL;
  size_t cap = 0;
  unsigned lineno = 0;

  fp = fopen (path, "re");
  if (fp == NULL) {
    if (errno == ENOENT && !must_exist)
      return 0;
    set_error (errno, "configuration '%s'", path);
    return -1;
  }
  errno = 0;
  while (getline (&line, &cap, fp) != -1) {
    lineno++;
    if (config_line (cfg, line) == -1) {
      error_prepend ("configuration '%s' line %u", path, lineno);
      return -1;
    }
  }
  if (ferror (fp)) {
    set_error (errno ? errno : EIO, "configuration '%s'", path);
    return -1;
  }
  return 0;
}
