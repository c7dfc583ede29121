/* SPDX-License-Identifier: Apache-2.0 */
/* libvirt.h: backups of libvirt domains (--domain, --quiesce) for backup.c. */
#ifndef KNIB_CLI_LIBVIRT_H
#define KNIB_CLI_LIBVIRT_H

#include <stdbool.h>

#include "backup/backup.h"
#include "domain/domain.h"

/* How long virsh may take for a query. */
#define LIBVIRT_VIRSH_TIMEOUT_MS 60000

/* Run "virsh ARGS..." (NULL-terminated); its stdout in *out (may be
 * NULL), stdin from in (may be NULL). */
int libvirt_virsh (char **out, const char *in, int timeout_ms, ...)
  __attribute__ ((sentinel, warn_unused_result));

/* What a backup of a domain needs while it runs. */
struct libvirt_backup {
  const char *domain;        /* NULL: not a libvirt domain */
  bool quiesce, quiesce_try; /* --quiesce, --quiesce=try */
  bool frozen;
  struct domain_info info; /* the domain as the hook or libvirt saw it */
  char *definition;        /* its persistent XML, stored with the backup */
  struct backup_rename *renames;
  struct offline_image *images;
  struct domain_hold *hold; /* an offline backup's images, for the hook */
};

/* Before backup_run: with domain, fill eo from the hook's records (a
 * running domain's QMP socket and disk names, or a stopped one's images)
 * and libvirt (the definition); quiesce is NULL, "on" or "try".  Without
 * a domain only an offline backup's hold is taken.  -1 with set_error. */
int libvirt_backup_begin (struct libvirt_backup *lb, const char *domain,
                          const char *quiesce, struct backup_options *eo)
  __attribute__ ((warn_unused_result));

/* After knib merged layers of the shut-off domain: drop the backing
 * chains its persistent definition records, so that libvirt reads them
 * from the images when it starts. */
int libvirt_forget_backing (const char *domain)
  __attribute__ ((warn_unused_result));

/* The shut-off domain's disk dev runs on image file from its next start
 * (knib snapshot revert). */
int libvirt_set_disk_file (const char *domain, const char *dev,
                           const char *file)
  __attribute__ ((warn_unused_result));

/* After it: drop the hold, free.  Safe after a failed begin. */
void libvirt_backup_end (struct libvirt_backup *lb);

#endif
