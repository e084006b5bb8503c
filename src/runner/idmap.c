/* uid/gid mappings for the build's user namespace (SPEC §10.6, the Snix
 * rule): container root is the running user, the build user (container uid
 * 1000, gid 100) is the first subordinate id of the running user, or a
 * configurable fallback when /etc/subuid or /etc/subgid has no entry (a
 * fresh Debian machine has none for root). */
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

int runner_subid_lookup(const char *file, uid_t uid, const char *name, uint32_t *ret,
                        struct kiln_error **err)
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
                *ret = start;
                r = 1;
                break;
        }
        fclose(f);
        return r;
}

int runner_idmaps_init(struct runner_config *cfg, struct kiln_error **err)
{
        uid_t uid = geteuid();
        gid_t gid = getegid();
        struct passwd *pw = getpwuid(uid);
        if (!pw)
                return kiln_error_set(err, ENOENT, "no passwd entry for uid %u", (unsigned)uid);
        uint32_t subuid = cfg->fallback_subid, subgid = cfg->fallback_subid;
        int r = runner_subid_lookup("/etc/subuid", uid, pw->pw_name, &subuid, err);
        if (r < 0)
                return r;
        r = runner_subid_lookup("/etc/subgid", uid, pw->pw_name, &subgid, err);
        if (r < 0)
                return r;
        cfg->uid_map[0] = (struct idmap){0, (uint32_t)uid, 1};
        cfg->uid_map[1] = (struct idmap){1000, subuid, 1};
        cfg->gid_map[0] = (struct idmap){0, (uint32_t)gid, 1};
        cfg->gid_map[1] = (struct idmap){100, subgid, 1};
        if (subuid == (uint32_t)uid || subgid == (uint32_t)gid)
                return kiln_error_set(err, EINVAL,
                                      "the build user's host id %u equals the running user's; "
                                      "set subid= in the oci:// URL",
                                      (unsigned)subuid);
        return 0;
}
