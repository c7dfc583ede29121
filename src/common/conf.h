/* SPDX-License-Identifier: Apache-2.0 */
/* conf.h: /etc/knib/knib.conf, "key = value" settings with the seed defaults. */
#ifndef KNIB_COMMON_CONF_H
#define KNIB_COMMON_CONF_H

#include <stdbool.h>
#include <stdint.h>

#define KNIB_CONFIG_PATH "/etc/knib/knib.conf"

/* Where knib keeps fleecing images and NBD sockets while a backup runs
 * (one private directory per run below it); the hook shares it with
 * QEMU's user. */
#define KNIB_DEFAULT_SCRATCH "/var/tmp/knib"

/* The most VMs with a policy of their own in one configuration. */
#define CONFIG_MAX_VM_POLICIES 512

/* vm.NAME.compress: how knibd compresses the backups of one VM. */
struct knib_vm_policy {
  char vm[129];     /* a valid name */
  char compress[9]; /* none | zstd | zlib | deferred */
};

struct knib_config {
  int64_t chain_size;    /* chain-size: 8; 1 all full; <1 unlimited */
  int64_t timeout;       /* timeout (s): 43200 */
  char compress[8];      /* compress: none | zstd | zlib */
  bool compression_jobs; /* compression-jobs: true */
  int64_t compression_jobs_per_host;  /* 5, -1 unlimited */
  int64_t compression_retries;        /* 2 */
  int64_t compression_retry_interval; /* minutes: 60 */
  int64_t compression_timeout;        /* seconds: 28800 */
  double compression_min_free;        /* ratio: 1.0 */
  int64_t compression_threads;        /* 0 = number of cores */
  int64_t compression_rate_limit;     /* MB/s, 0 = off */
  int64_t hook_start_wait; /* seconds the libvirt hook lets a start wait
                              for an offline backup: 10 */
  int64_t validation_jobs_per_host; /* boot validations at once (knib
                                       validate and knibd): 1, -1
                                       unlimited */
  int64_t backup_jobs_per_host;     /* knibd: 0 = number of cores */
  int64_t retry_interval_unit;      /* knibd: seconds in one minute of
                                       compression-retry-interval: 60 */
  char agent_group[64];             /* knibd: a group also allowed on its
                                       socket ("" none) */
  char files_accel[8]; /* files-accel: auto | kvm | tcg (libguestfs's
                          appliance for "knib files") */
  size_t n_vm_policies;
  struct knib_vm_policy vm_policies[CONFIG_MAX_VM_POLICIES];
};

void config_init (struct knib_config *cfg);

/* Set one key from its text value (the file and the command line share
 * this).  Returns 0, or -1 with set_error naming the key. */
int config_set (struct knib_config *cfg, const char *key, const char *value)
  __attribute__ ((warn_unused_result));

/* The name of the i-th key, NULL past the last: to list them all
 * (the per-VM keys are listed by config_vm_key). */
const char *config_key (size_t i);

/* The i-th per-VM key set ("vm.NAME.compress", caller frees), NULL past
 * the last. */
char *config_vm_key (const struct knib_config *cfg, size_t i)
  __attribute__ ((warn_unused_result));

/* vm.NAME.compress of vm (borrowed), or NULL when it has none. */
const char *config_vm_compress (const struct knib_config *cfg, const char *vm);

/* The value of key as the file would spell it (caller frees), or NULL
 * with set_error (unknown key, ENOMEM). */
char *config_get (const struct knib_config *cfg, const char *key)
  __attribute__ ((warn_unused_result));

/* Read a configuration file over cfg.  A missing file is fine unless
 * must_exist; every error names the file and the line. */
int config_load (struct knib_config *cfg, const char *path, bool must_exist)
  __attribute__ ((warn_unused_result));

#endif
