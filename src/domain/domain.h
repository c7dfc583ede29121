/* SPDX-License-Identifier: Apache-2.0 */
/* domain.h: libvirt domains for knib: their XML, the hook's records, holds. */
#ifndef KNIB_DOMAIN_DOMAIN_H
#define KNIB_DOMAIN_DOMAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/vector.h"

/* Where knib keeps what the hook records.  Tests move them with the
 * environment variables KNIB_RUN_DIR and KNIB_STATE_DIR (libvirtd runs
 * its hooks with a clean environment: the real hook always uses these). */
#define DOMAIN_RUN_DIR "/run/knib"
#define DOMAIN_STATE_DIR "/var/lib/knib"

/* Below the run directory: knib's QMP sockets ("<uuid>.sock", the
 * directory owned by the user QEMU runs as, 0700), the hook's records
 * ("<name>.json") and the holds of offline backups ("<vm>.<pid>.hold"). */
#define DOMAIN_QMP_SUBDIR "qmp"
#define DOMAIN_RECORD_SUBDIR "domains"
#define DOMAIN_HOLD_SUBDIR "offline"

/* In the run directory: knibd's datagram socket, where the hook tells
 * the agent of a domain's start and stop without ever waiting: one
 * datagram "running NAME" or "stopped NAME" (knibd(8)). */
#define DOMAIN_AGENT_NOTIFY "knibd.notify"

/* Who QEMU runs as when the domain XML does not say (Debian's libvirt). */
#define DOMAIN_DEFAULT_QEMU_USER "libvirt-qemu"

/* The libvirt namespace of <qemu:commandline>. */
#define DOMAIN_QEMU_NS "http://libvirt.org/schemas/domain/qemu/1.0"

/* KNIB_RUN_DIR or DOMAIN_RUN_DIR, KNIB_STATE_DIR or DOMAIN_STATE_DIR. */
const char *domain_run_dir (void);
const char *domain_state_dir (void);

/* "<run>/qmp", "<run>/qmp/<uuid>.sock" (NULL with set_error when out of
 * memory or the uuid is not a uuid). */
char *domain_qmp_dir (void) __attribute__ ((warn_unused_result));
char *domain_qmp_socket (const char *uuid) __attribute__ ((warn_unused_result));

/* Make dir (mode) when missing, and its parents (0711: QEMU, another
 * user, must pass through them to reach its socket). */
int domain_make_dir (const char *dir, mode_t mode)
  __attribute__ ((warn_unused_result));

/* ---- The domain XML ---- */

struct domain_disk {
  char *target;  /* "vda" */
  char *alias;   /* QEMU's device id ("virtio-disk0", "ua-data"): only
                    in the XML of a running domain; else NULL */
  char *type;    /* "file", "block", "network", "volume", ... */
  char *device;  /* "disk", "cdrom", "floppy", "lun" */
  char *source;  /* the file or block device; NULL for other types or an
                    empty drive */
  char *format;  /* <driver type=...>: "qcow2", "raw"; NULL when unset */
  bool readonly; /* <readonly/> */
  char *bus;     /* <target bus=...>: "virtio", "sata", "scsi", "ide" */
  unsigned boot; /* <boot order=N/>, 0 when unset */
};
DEFINE_VECTOR_TYPE (domain_disk_vector, struct domain_disk)

/* <cpu><feature policy=... name=.../> */
struct domain_cpu_feature {
  char *name;
  char *policy; /* "require", "force", "optional", "disable", "forbid" */
};
DEFINE_VECTOR_TYPE (domain_cpu_feature_vector, struct domain_cpu_feature)

struct domain_info {
  char *name;
  char *uuid;
  domain_disk_vector disks;
  bool agent;       /* a guest agent channel (org.qemu.guest_agent.0) */
  char *agent_path; /* its unix socket, when the XML says (running) */
  char *qmp;        /* knib's QMP socket from <qemu:commandline>, or NULL */
  bool dac_label;   /* the XML names QEMU's user: */
  uid_t qemu_uid;   /* <seclabel model='dac'><label>+UID:+GID */
  gid_t qemu_gid;
  /* The hardware, for a VM made from the definition (NULL or 0 where
   * the XML does not say): */
  char *machine;        /* <os><type machine=...>: "pc-q35-7.2" */
  char *firmware;       /* <os firmware=...>: "bios", "efi" */
  char *loader;         /* <loader>: the firmware image */
  char *loader_type;    /* <loader type=...>: "rom", "pflash" */
  bool loader_secure;   /* <loader secure='yes'> */
  char *nvram_template; /* <nvram template=...> */
  char *kernel;         /* direct kernel boot: <kernel>, <initrd>, */
  char *initrd;         /* <cmdline> */
  char *cmdline;
  uint64_t memory_kib; /* <memory> in KiB */
  unsigned vcpus;      /* <vcpu> */
  char *cpu_mode;      /* <cpu mode=...>: "host-passthrough", "custom"... */
  char *cpu_model;     /* <cpu><model>: "Haswell-noTSX" */
  char *cpu_fallback;  /* <model fallback=...>: "allow", "forbid" */
  domain_cpu_feature_vector cpu_features;
};

/* Parse a domain XML (libvirt's, running or inactive).  A document that
 * is not a domain, or has no name, is an error. */
int domain_info_parse (const char *xml, size_t len, struct domain_info *info)
  __attribute__ ((warn_unused_result));
void domain_info_release (struct domain_info *info);

/* The disk whose alias (QEMU's device id) is alias, or NULL. */
const struct domain_disk *domain_info_find_alias (const struct domain_info *i,
                                                  const char *alias);

/* Drop the <backingStore> of every disk of a domain XML, so that libvirt
 * reads the backing chains from the images when the domain starts (after
 * knib merged layers of a shut-off domain).  *out is the new document,
 * or NULL when there was none. */
int domain_xml_drop_backing (const char *xml, size_t len, char **out)
  __attribute__ ((warn_unused_result));

/* Point the disk whose target is dev at image file (its backing chain
 * dropped, for libvirt to read from the image).  *out: the new document. */
int domain_xml_set_disk_file (const char *xml, size_t len, const char *dev,
                              const char *file, char **out)
  __attribute__ ((warn_unused_result));

/* Add (enable) or remove (!enable) "-qmp unix:SOCKET,server=on,wait=off"
 * in the <qemu:commandline> of a domain XML.  *out is the new document,
 * or NULL when nothing had to change. */
int domain_xml_set_qmp (const char *xml, size_t len, const char *socket,
                        bool enable, char **out)
  __attribute__ ((warn_unused_result));

/* A disk of a new domain made from a stored definition. */
struct domain_clone_disk {
  const char *target; /* "vda" */
  const char *path;   /* its new image (qcow2) */
};

/* A stored definition as a new domain: name and uuid replaced, every
 * interface's MAC address dropped (libvirt makes new ones), the n disks
 * reading their new images, and every other disk that held an image of
 * the original VM dropped (*dropped counts them; CD-ROMs stay).  *out is
 * the new document. */
int domain_xml_clone (const char *xml, size_t len, const char *name,
                      const char *uuid, const struct domain_clone_disk *disks,
                      size_t n, size_t *dropped, char **out)
  __attribute__ ((warn_unused_result));

/* ---- The hook's records ---- */

enum domain_state {
  DOMAIN_STATE_RUNNING,
  DOMAIN_STATE_STOPPED,
};

struct domain_record {
  struct domain_info info;
  enum domain_state state;
  int64_t updated; /* seconds since the epoch */
};

/* Write "<run>/domains/<name>.json" atomically. */
int domain_record_save (const struct domain_record *r)
  __attribute__ ((warn_unused_result));

/* Read it: NULL with errno ENOENT when there is none. */
struct domain_record *domain_record_load (const char *name)
  __attribute__ ((warn_unused_result));
void domain_record_free (struct domain_record *r);

/* "<state>/domains/<name>.xml": the domain's XML as the hook last saw
 * it, written atomically; read (NULL, errno ENOENT: none). */
int domain_xml_save (const char *name, const char *xml, size_t len)
  __attribute__ ((warn_unused_result));
char *domain_xml_load (const char *name) __attribute__ ((warn_unused_result));

/* ---- Holds: an offline backup has a stopped VM's images open ----
 *
 * "<run>/offline/<vm>.<pid>.hold" lists the images (their real paths)
 * and stays locked (fcntl) while the backup runs: a hold that nobody
 * locks is a killed backup's, and counts for nothing.  The hook refuses
 * a domain's start while a live hold names one of its images. */

struct domain_hold;

/* Take a hold on the n images of vm (paths are resolved).  NULL with
 * set_error when it cannot be written. */
struct domain_hold *domain_hold_take (const char *vm, const char *const *paths,
                                      size_t n)
  __attribute__ ((warn_unused_result));

/* Remove the hold.  NULL is a no-op. */
void domain_hold_release (struct domain_hold *h);

struct domain_holder {
  long pid;
  char vm[256];
  char image[4096]; /* the image it holds */
};

/* Whether a live hold of another process names one of the n images
 * (resolved here): 1 and *who filled, 0 when none, -1 with set_error. */
int domain_hold_find (const char *const *paths, size_t n,
                      struct domain_holder *who)
  __attribute__ ((warn_unused_result));

#endif
