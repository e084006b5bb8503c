/* uid/gid mappings for the build's user namespace. kiln departs from
 * upstream (which maps container root to the running user, i.e. host root for
 * the daemon): container root and the build user (uid 1000, gid 100) both
 * map to ids of the running user's subordinate range, two per build slot,
 * so a build that gains container root still owns nothing on the host.
 * The range comes from /etc/subuid and /etc/subgid (the Snix lookup rule),
 * or a configurable fallback when they have no entry (a fresh Debian
 * machine has none for root). */
#include <ctype.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>

#include "runner.h"

static char *trim(char *s)
{
        while (isspace((unsigned char)*s))
                s++;
        char *e = s + strlen(s);
        while (e > s && isspace((unsigned char)e[-1]))
                *--e = '\0';
        return s;
}

static bool parse_u32(const char *s, uint32_t *ret)
{
        if (!*s)
                return false;
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (errno || *end || v > UINT32_MAX || !isdigit((unsigned char)*s))
                return false;
        *ret = (uint32_t)v;
        return true;
}

int runner_subid_lookup(const char *file, uid_t uid, const char *name, uint32_t *ret_start,
                        uint32_t *ret_count, struct kiln_error **err)
{
        FILE *f = fopen(file, "re");
        if (!f) {
                if (errno == ENOENT)
                        return 0;
                return kiln_error_errno(err, errno, "unable to read %s", file);
        }
        char uid_s[16];
        snprintf(uid_s, sizeof(uid_s), "%u", (unsigned)uid);
        char line[512];
        int r = 0;
        while (fgets(line, sizeof(line), f)) {
                char *fields[4], *save = NULL;
                size_t n = 0;
                for (char *tok = strtok_r(trim(line), ":", &save); tok && n < 4;
                     tok = strtok_r(NULL, ":", &save))
                        fields[n++] = tok;
                if (n != 3 || (strcmp(fields[0], name) && strcmp(fields[0], uid_s)))
                        continue;
                uint32_t start, count;
                if (!parse_u32(fields[1], &start) || !parse_u32(fields[2], &count)) {
                        r = kiln_error_set(err, EINVAL, "%s: cannot parse the entry for %s",
                                           file, fields[0]);
                        break;
                }
                if (count == 0)
                        continue;
                *ret_start = start;
                *ret_count = count;
                r = 1;
                break;
        }
        fclose(f);
        return r;
}

/* The ids a slot needs from each range: container root and the build user. */
#define IDS_PER_SLOT 2

static int check_range(const char *what, uint32_t start, uint32_t count, uint32_t own,
                       unsigned concurrency, struct kiln_error **err)
{
        uint64_t need = (uint64_t)IDS_PER_SLOT * concurrency;
        if (count < need)
                return kiln_error_set(err, EINVAL,
                                      "the subordinate %s range %u+%u is too small for %u build "
                                      "slots (%llu ids needed)",
                                      what, (unsigned)start, (unsigned)count, concurrency,
                                      (unsigned long long)need);
        if (start == 0 || (uint64_t)start + need > (uint64_t)UINT32_MAX ||
            (own >= start && (uint64_t)own < (uint64_t)start + need))
                return kiln_error_set(err, EINVAL,
                                      "the subordinate %s range %u+%llu holds a privileged id or "
                                      "the running user's; set subid= in the build service URL",
                                      what, (unsigned)start, (unsigned long long)need);
        return 0;
}

int runner_idmaps_init(struct runner_config *cfg, struct kiln_error **err)
{
        uid_t uid = geteuid();
        gid_t gid = getegid();
        struct passwd *pw = getpwuid(uid);
        if (!pw)
                return kiln_error_set(err, ENOENT, "no passwd entry for uid %u", (unsigned)uid);
        cfg->subuid = cfg->subgid = cfg->fallback_subid;
        cfg->subuid_count = cfg->subgid_count = 65536;
        int r = runner_subid_lookup("/etc/subuid", uid, pw->pw_name, &cfg->subuid,
                                    &cfg->subuid_count, err);
        if (r < 0)
                return r;
        r = runner_subid_lookup("/etc/subgid", uid, pw->pw_name, &cfg->subgid,
                                &cfg->subgid_count, err);
        if (r < 0)
                return r;
        r = check_range("uid", cfg->subuid, cfg->subuid_count, (uint32_t)uid, cfg->concurrency,
                        err);
        if (r < 0)
                return r;
        return check_range("gid", cfg->subgid, cfg->subgid_count, (uint32_t)gid,
                           cfg->concurrency, err);
}

void runner_slot_ids(const struct runner_config *cfg, unsigned slot, struct runner_ids *ret)
{
        uint32_t off = IDS_PER_SLOT * slot;
        *ret = (struct runner_ids){
                .root_uid = cfg->subuid + off,
                .root_gid = cfg->subgid + off,
                .build_uid = cfg->subuid + off + 1,
                .build_gid = cfg->subgid + off + 1,
        };
}
