/* Live build events: see events.h. Encoded by hand in field order (the
 * canonical encoding, like every message kiln writes); the Completed event
 * embeds the Build as kiln_build_encode() writes it. */
#include <stdio.h>

#include <kiln/build/events.h>
#include <kiln/util/base64.h>
#include <kiln/util/status.h>

static void put_tag(struct kiln_buf *out, unsigned field, unsigned wire)
{
        kiln_buf_append_varint(out, (uint64_t)field << 3 | wire);
}

static void put_bytes(struct kiln_buf *out, unsigned field, const void *p, size_t n)
{
        put_tag(out, field, 2);
        kiln_buf_append_varint(out, n);
        kiln_buf_append(out, p, n);
}

static void put_varint(struct kiln_buf *out, unsigned field, uint64_t v)
{
        if (!v) /* proto3: defaults are not written */
                return;
        put_tag(out, field, 0);
        kiln_buf_append_varint(out, v);
}

void kiln_build_event_encode(const struct kiln_build_event *ev, struct kiln_buf *out)
{
        struct kiln_buf m = KILN_BUF_INIT;
        unsigned field = 0;
        switch (ev->kind) {
        case KILN_BUILD_EVENT_QUEUED:
                field = 1;
                put_varint(&m, 1, ev->position);
                break;
        case KILN_BUILD_EVENT_STARTED:
                field = 2;
                break;
        case KILN_BUILD_EVENT_LOG:
                field = 3;
                put_varint(&m, 1, (uint64_t)ev->stream);
                if (ev->len)
                        put_bytes(&m, 2, ev->data, ev->len);
                break;
        case KILN_BUILD_EVENT_REFSCAN:
                field = 4;
                break;
        case KILN_BUILD_EVENT_COMPLETED: {
                field = 5;
                struct kiln_buf b = KILN_BUF_INIT;
                kiln_build_encode(ev->build, &b);
                put_bytes(&m, 1, b.data, b.len);
                kiln_buf_done(&b);
                put_varint(&m, 2, ev->cached);
                put_varint(&m, 3, ev->joined);
                break;
        }
        case KILN_BUILD_EVENT_FAILED:
                field = 6;
                put_varint(&m, 1, ev->code);
                if (ev->message && *ev->message)
                        put_bytes(&m, 2, ev->message, strlen(ev->message));
                if (ev->len)
                        put_bytes(&m, 3, ev->data, ev->len);
                break;
        }
        put_bytes(out, field, m.data, m.len);
        kiln_buf_done(&m);
}

static json_t *base64_json(const uint8_t *p, size_t n)
{
        _cleanup_free_ char *s = kiln_base64_encode_alloc(p, n);
        return json_string(s);
}

json_t *kiln_build_event_to_json(const struct kiln_build_event *ev)
{
        json_t *body = json_object();
        const char *name = "";
        switch (ev->kind) {
        case KILN_BUILD_EVENT_QUEUED: {
                name = "queued";
                char num[24];
                snprintf(num, sizeof(num), "%llu", (unsigned long long)ev->position);
                if (ev->position) /* uint64 is a string in proto3 JSON */
                        json_object_set_new(body, "position", json_string(num));
                break;
        }
        case KILN_BUILD_EVENT_STARTED:
                name = "started";
                break;
        case KILN_BUILD_EVENT_LOG:
                name = "log";
                json_object_set_new(body, "stream",
                                    json_string(ev->stream == 1   ? "STDOUT"
                                                : ev->stream == 2 ? "STDERR"
                                                                  : "STREAM_UNSPECIFIED"));
                if (ev->len)
                        json_object_set_new(body, "data", base64_json(ev->data, ev->len));
                break;
        case KILN_BUILD_EVENT_REFSCAN:
                name = "refscan";
                break;
        case KILN_BUILD_EVENT_COMPLETED:
                name = "completed";
                json_object_set_new(body, "build", kiln_build_to_json(ev->build));
                if (ev->cached)
                        json_object_set_new(body, "cached", json_true());
                if (ev->joined)
                        json_object_set_new(body, "joined", json_true());
                break;
        case KILN_BUILD_EVENT_FAILED:
                name = "failed";
                if (ev->code)
                        json_object_set_new(body, "code", json_integer(ev->code));
                if (ev->message && *ev->message)
                        json_object_set_new(body, "message", json_string(ev->message));
                if (ev->len)
                        json_object_set_new(body, "logTail", base64_json(ev->data, ev->len));
                break;
        }
        json_t *j = json_object();
        json_object_set_new(j, name, body);
        return j;
}

/* --- from a build call's callbacks --- */

static void emit(struct kiln_build_events *e, struct kiln_build_event ev)
{
        e->emit(e->ud, &ev);
}

static void on_phase(void *ud, const char *phase)
{
        struct kiln_build_events *e = ud;
        if (e->phase)
                e->phase(e->ud, phase);
        if (!strcmp(phase, "cache-hit")) {
                e->cached = true;
        } else if (!strcmp(phase, "joined")) {
                e->joined = true;
        } else if (!strcmp(phase, "ingest")) {
                emit(e, (struct kiln_build_event){.kind = KILN_BUILD_EVENT_REFSCAN});
        } else if (strcmp(phase, "queued") && !e->started) {
                e->started = true; /* bundle, mount or run: out of the queue */
                emit(e, (struct kiln_build_event){.kind = KILN_BUILD_EVENT_STARTED});
        }
}

static void on_position(void *ud, size_t ahead)
{
        struct kiln_build_events *e = ud;
        if (e->position)
                e->position(e->ud, ahead);
        emit(e, (struct kiln_build_event){.kind = KILN_BUILD_EVENT_QUEUED, .position = ahead});
}

static void on_output(void *ud, int stream, const void *p, size_t n)
{
        struct kiln_build_events *e = ud;
        const uint8_t *b = p;
        for (size_t i = 0; i < n; i++) { /* small pieces: a byte loop is fine */
                e->tail[e->tail_pos] = b[i];
                e->tail_pos = (e->tail_pos + 1) % KILN_BUILD_EVENT_TAIL;
        }
        e->tail_len = KILN_MIN(e->tail_len + n, (size_t)KILN_BUILD_EVENT_TAIL);
        /* Pieces of at most 64 KiB, well below any message limit. */
        for (size_t off = 0; off < n; off += 64 * 1024)
                emit(e, (struct kiln_build_event){.kind = KILN_BUILD_EVENT_LOG,
                                                  .stream = stream,
                                                  .data = b + off,
                                                  .len = KILN_MIN(n - off, (size_t)64 * 1024)});
}

void kiln_build_events_init(struct kiln_build_events *e, kiln_build_event_fn fn, void *ud,
                            struct kiln_build_call *call)
{
        void (*phase)(void *, const char *) = e->phase;
        void (*position)(void *, size_t) = e->position;
        *e = (struct kiln_build_events){.emit = fn, .ud = ud, .phase = phase, .position = position};
        call->progress = on_phase;
        call->output = on_output;
        call->queue_position = on_position;
        call->userdata = e;
}

void kiln_build_events_end(struct kiln_build_events *e, int r, const struct kiln_build *build,
                           const struct kiln_error *err)
{
        if (r >= 0) {
                emit(e, (struct kiln_build_event){.kind = KILN_BUILD_EVENT_COMPLETED,
                                                  .build = build,
                                                  .cached = e->cached,
                                                  .joined = e->joined});
                return;
        }
        uint8_t tail[KILN_BUILD_EVENT_TAIL];
        size_t start = (e->tail_pos + KILN_BUILD_EVENT_TAIL - e->tail_len) % KILN_BUILD_EVENT_TAIL;
        for (size_t i = 0; i < e->tail_len; i++)
                tail[i] = e->tail[(start + i) % KILN_BUILD_EVENT_TAIL];
        int code = err ? err->code : -r;
        emit(e, (struct kiln_build_event){.kind = KILN_BUILD_EVENT_FAILED,
                                          .code = kiln_status_from_errno(code),
                                          .message = err ? err->msg : strerror(code),
                                          .data = tail,
                                          .len = e->tail_len});
}
