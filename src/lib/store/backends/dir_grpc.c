/* grpc+…:// directory service: the client of
 * tvix.castore.v1.DirectoryService. Every received Directory is
 * decoded with full validation and checked against the digest it was asked
 * for; recursive Gets go through a root-to-leaves closure validator,
 * so a server cannot slip in unrelated, duplicated or mis-sized Directories.
 * A putter is one Put stream whose root digest must equal the digest of the
 * last Directory sent. Thread-safety as for the blob client: the service is
 * shared, streams and putters belong to one thread at a time. */
#include <stdio.h>

#include <kiln/store/backend.h>

#include "backends.h"
#include "../../rpc/client.h"
#include "rpc_directory.pb-c.h"

#define M_GET "/tvix.castore.v1.DirectoryService/Get"
#define M_PUT "/tvix.castore.v1.DirectoryService/Put"

struct grpc_dir_service {
        struct kiln_directory_service base;
        struct rpc_channel *ch;
};

static int start_get(struct grpc_dir_service *g, const struct kiln_digest *d, bool recursive,
                     struct rpc_call *c, struct kiln_error **err)
{
        Tvix__Castore__V1__GetDirectoryRequest req;
        tvix__castore__v1__get_directory_request__init(&req);
        req.by_what_case = TVIX__CASTORE__V1__GET_DIRECTORY_REQUEST__BY_WHAT_DIGEST;
        req.digest.data = (uint8_t *)d->b;
        req.digest.len = KILN_DIGEST_LEN;
        req.recursive = recursive;
        uint8_t buf[64];
        size_t n = tvix__castore__v1__get_directory_request__pack(&req, buf);
        int r = rpc_call_start(c, g->ch, M_GET, 0, NULL, err);
        if (r >= 0)
                r = rpc_call_send(c, kiln_rpc_bb_copy(buf, n), err);
        if (r >= 0)
                r = rpc_call_close_send(c, err);
        return r;
}

/* Decodes a received Directory and computes its digest; a server's mistake
 * is -EBADMSG. */
static int decode(struct grpc_dir_service *g, const struct kiln_buf *msg,
                  struct kiln_directory *ret, struct kiln_digest *ret_digest,
                  struct kiln_buf *scratch, struct kiln_error **err)
{
        int r = kiln_directory_decode(msg->data, msg->len, ret, err);
        if (r < 0) {
                if (err && *err)
                        (*err)->code = EBADMSG;
                return kiln_error_prefix(err, -EBADMSG, "invalid Directory from %s",
                                         rpc_channel_url(g->ch));
        }
        kiln_directory_digest(ret, scratch, ret_digest);
        return 0;
}

static int grpc_dir_get(struct kiln_directory_service *s, const struct kiln_digest *d,
                        struct kiln_directory *ret, struct kiln_error **err)
{
        struct grpc_dir_service *g = (struct grpc_dir_service *)s;
        struct rpc_call call;
        _cleanup_(kiln_buf_done) struct kiln_buf msg = KILN_BUF_INIT;
        _cleanup_(kiln_error_freep) struct kiln_error *e = NULL;
        int r = start_get(g, d, false, &call, &e);
        if (r >= 0)
                r = rpc_call_recv(&call, &msg, &e);
        struct kiln_directory dir = KILN_DIRECTORY_INIT;
        struct kiln_digest got;
        if (r > 0) {
                r = decode(g, &msg, &dir, &got, NULL, &e);
                if (r >= 0 && !kiln_digest_eq(&got, d))
                        r = kiln_error_set(&e, EBADMSG,
                                           "%s: requested directory with digest %s, but got %s",
                                           rpc_channel_url(g->ch), KILN_DIGEST_B64(d),
                                           KILN_DIGEST_B64(&got));
                if (r >= 0) {
                        r = rpc_call_recv(&call, &msg, &e);
                        if (r > 0)
                                r = kiln_error_set(&e, EBADMSG,
                                                   "%s: more than one Directory for a "
                                                   "non-recursive Get",
                                                   rpc_channel_url(g->ch));
                        else if (r == 0)
                                r = 1;
                }
        }
        rpc_call_done(&call);
        if (r == -ENOENT || r == 0) {
                kiln_directory_done(&dir);
                return 0;
        }
        if (r < 0) {
                kiln_directory_done(&dir);
                return rpc_error_move(err, &e, r);
        }
        *ret = dir;
        return 1;
}

/* One Put stream. */
struct grpc_dir_putter {
        struct kiln_directory_putter base;
        struct grpc_dir_service *svc;
        struct rpc_call call;
        bool started;
        size_t n;
        struct kiln_digest last;
        struct kiln_buf enc;
};

static int putter_put(struct kiln_directory_putter *p, const struct kiln_directory *dir,
                      struct kiln_error **err)
{
        struct grpc_dir_putter *gp = (struct grpc_dir_putter *)p;
        if (!gp->started) {
                int r = rpc_call_start(&gp->call, gp->svc->ch, M_PUT, 0, NULL, err);
                if (r < 0)
                        return r;
                gp->started = true;
        }
        kiln_buf_clear(&gp->enc);
        kiln_directory_encode(dir, &gp->enc);
        kiln_digest_of(gp->enc.data, gp->enc.len, &gp->last);
        int r = rpc_call_send(&gp->call, kiln_rpc_bb_copy(gp->enc.data, gp->enc.len), err);
        if (r < 0)
                return r;
        gp->n++;
        return 0;
}

static int putter_close(struct kiln_directory_putter *p, struct kiln_digest *ret_root,
                        struct kiln_error **err)
{
        struct grpc_dir_putter *gp = (struct grpc_dir_putter *)p;
        const char *url = rpc_channel_url(gp->svc->ch);
        if (gp->n == 0)
                return kiln_error_set(err, EINVAL, "got no directories");
        int r = rpc_call_close_send(&gp->call, err);
        if (r < 0)
                return r;
        _cleanup_(kiln_buf_done) struct kiln_buf resp = KILN_BUF_INIT;
        r = rpc_call_recv(&gp->call, &resp, err);
        if (r < 0)
                return r;
        if (r == 0)
                return kiln_error_set(err, EIO, "DirectoryService/Put on %s: no response", url);
        _cleanup_(kiln_buf_done) struct kiln_buf extra = KILN_BUF_INIT;
        r = rpc_call_recv(&gp->call, &extra, err);
        if (r < 0)
                return r;
        if (r > 0)
                return kiln_error_set(err, EBADMSG,
                                      "DirectoryService/Put on %s: more than one response", url);
        Tvix__Castore__V1__PutDirectoryResponse *m =
                tvix__castore__v1__put_directory_response__unpack(NULL, resp.len, resp.data);
        if (!m)
                return kiln_error_set(err, EBADMSG,
                                      "DirectoryService/Put on %s: malformed response", url);
        size_t len = m->root_digest.len;
        struct kiln_digest got = {0};
        if (len == KILN_DIGEST_LEN)
                memcpy(got.b, m->root_digest.data, len);
        tvix__castore__v1__put_directory_response__free_unpacked(m, NULL);
        if (len != KILN_DIGEST_LEN)
                return kiln_error_set(err, EBADMSG,
                                      "DirectoryService/Put on %s: invalid root digest length "
                                      "%zu",
                                      url, len);
        if (!kiln_digest_eq(&got, &gp->last))
                return kiln_error_set(err, EBADMSG,
                                      "DirectoryService/Put on %s: server answered root %s, but "
                                      "the last Directory sent was %s",
                                      url, KILN_DIGEST_B64(&got), KILN_DIGEST_B64(&gp->last));
        *ret_root = got;
        return 0;
}

static void putter_free(struct kiln_directory_putter *p)
{
        struct grpc_dir_putter *gp = (struct grpc_dir_putter *)p;
        rpc_call_done(&gp->call); /* an unclosed stream is cancelled: nothing is stored */
        kiln_buf_done(&gp->enc);
        free(gp);
}

static const struct kiln_directory_putter_ops putter_ops = {
        .put = putter_put,
        .close = putter_close,
        .free = putter_free,
};

static int grpc_dir_put_multiple_start(struct kiln_directory_service *s,
                                       struct kiln_directory_putter **ret,
                                       struct kiln_error **err)
{
        (void)err;
        struct grpc_dir_putter *p = kiln_calloc(1, sizeof(*p));
        p->base.ops = &putter_ops;
        p->svc = (struct grpc_dir_service *)s;
        *ret = &p->base;
        return 0;
}

static int grpc_dir_put(struct kiln_directory_service *s, const struct kiln_directory *dir,
                        struct kiln_digest *ret_digest, struct kiln_error **err)
{
        struct kiln_directory_putter *p;
        int r = grpc_dir_put_multiple_start(s, &p, err);
        if (r < 0)
                return r;
        r = putter_put(p, dir, err);
        if (r >= 0)
                r = putter_close(p, ret_digest, err);
        putter_free(p);
        return r;
}

/* Recursive Get through a root-to-leaves validator. */
struct grpc_dir_stream {
        struct kiln_directory_stream base;
        struct grpc_dir_service *svc;
        struct rpc_call call;
        struct kiln_closure *closure;
        struct kiln_buf msg, scratch;
        bool got_any, done;
};

static int stream_next(struct kiln_directory_stream *st, struct kiln_directory *ret,
                       struct kiln_digest *ret_digest, struct kiln_error **err)
{
        struct grpc_dir_stream *gs = (struct grpc_dir_stream *)st;
        const char *url = rpc_channel_url(gs->svc->ch);
        for (;;) {
                if (gs->done)
                        return 0;
                _cleanup_(kiln_error_freep) struct kiln_error *e = NULL;
                int r = rpc_call_recv(&gs->call, &gs->msg, &e);
                if (r <= 0) {
                        gs->done = true;
                        if (!gs->got_any && (r == 0 || r == -ENOENT))
                                return 0; /* missing root: empty stream */
                        if (r < 0)
                                return rpc_error_move(err, &e, r);
                        r = kiln_closure_finish(gs->closure, NULL, err);
                        if (r < 0) {
                                if (err && *err)
                                        (*err)->code = EBADMSG;
                                return kiln_error_prefix(err, -EBADMSG,
                                                         "recursive Get on %s: premature end of "
                                                         "stream",
                                                         url);
                        }
                        return 0;
                }
                struct kiln_directory dir = KILN_DIRECTORY_INIT;
                struct kiln_digest d;
                r = decode(gs->svc, &gs->msg, &dir, &d, &gs->scratch, err);
                if (r < 0)
                        return r;
                r = kiln_closure_want(gs->closure, &d, err);
                if (r == 0) { /* a duplicate: already yielded */
                        kiln_directory_done(&dir);
                        continue;
                }
                if (r > 0)
                        r = kiln_closure_add(gs->closure, &dir, NULL, err);
                if (r < 0) {
                        kiln_directory_done(&dir);
                        if (err && *err)
                                (*err)->code = EBADMSG;
                        return kiln_error_prefix(err, -EBADMSG, "recursive Get on %s: directory %s",
                                                 url, KILN_DIGEST_B64(&d));
                }
                gs->got_any = true;
                *ret = dir;
                if (ret_digest)
                        *ret_digest = d;
                return 1;
        }
}

static void stream_free(struct kiln_directory_stream *st)
{
        struct grpc_dir_stream *gs = (struct grpc_dir_stream *)st;
        rpc_call_done(&gs->call);
        kiln_closure_free(gs->closure);
        kiln_buf_done(&gs->msg);
        kiln_buf_done(&gs->scratch);
        free(gs);
}

static const struct kiln_directory_stream_ops stream_ops = {
        .next = stream_next,
        .free = stream_free,
};

static int grpc_dir_get_recursive(struct kiln_directory_service *s,
                                  const struct kiln_digest *root,
                                  struct kiln_directory_stream **ret, struct kiln_error **err)
{
        struct grpc_dir_stream *gs = kiln_calloc(1, sizeof(*gs));
        gs->base.ops = &stream_ops;
        gs->svc = (struct grpc_dir_service *)s;
        gs->closure = kiln_closure_new(KILN_CLOSURE_ROOT_TO_LEAVES, root);
        int r = start_get(gs->svc, root, true, &gs->call, err);
        if (r < 0) {
                stream_free(&gs->base);
                return r;
        }
        *ret = &gs->base;
        return 0;
}

static void grpc_dir_free(struct kiln_directory_service *s)
{
        struct grpc_dir_service *g = (struct grpc_dir_service *)s;
        rpc_channel_unref(g->ch);
        free(g);
}

static const struct kiln_directory_service_ops grpc_dir_ops = {
        .name = "grpc",
        .get = grpc_dir_get,
        .put = grpc_dir_put,
        .get_recursive = grpc_dir_get_recursive,
        .put_multiple_start = grpc_dir_put_multiple_start,
        .free = grpc_dir_free,
};

int kiln_directory_grpc_new(const struct kiln_url *u, const char *url,
                            struct kiln_directory_service **ret, struct kiln_error **err)
{
        struct rpc_channel *ch;
        int r = rpc_channel_open(u, url, &ch, err);
        if (r < 0)
                return r;
        struct grpc_dir_service *g = kiln_calloc(1, sizeof(*g));
        g->base.ops = &grpc_dir_ops;
        g->ch = ch;
        *ret = &g->base;
        return 0;
}
