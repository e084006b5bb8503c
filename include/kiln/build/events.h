/* Live build events (kiln.build.v1.BuildEvent, proto/kiln/build/v1):
 * what a build reports while it runs, made from a build call's callbacks,
 * and their protobuf and proto3 JSON forms. The daemon streams them; the
 * CLI prints them (--json) or shows them on a terminal. */
#pragma once

#include <jansson.h>

#include <kiln/build/service.h>

enum kiln_build_event_kind {
        KILN_BUILD_EVENT_QUEUED,
        KILN_BUILD_EVENT_STARTED,
        KILN_BUILD_EVENT_LOG,
        KILN_BUILD_EVENT_REFSCAN,
        KILN_BUILD_EVENT_COMPLETED,
        KILN_BUILD_EVENT_FAILED,
};

struct kiln_build_event {
        enum kiln_build_event_kind kind;
        uint64_t position;    /* QUEUED: builds ahead */
        int stream;           /* LOG: 1 stdout, 2 stderr */
        const uint8_t *data;  /* LOG: the bytes; FAILED: the log tail */
        size_t len;
        const struct kiln_build *build; /* COMPLETED */
        bool cached, joined;            /* COMPLETED */
        unsigned code;                  /* FAILED: the gRPC status code */
        const char *message;            /* FAILED */
};

/* The protobuf encoding of one BuildEvent. */
KILN_PUBLIC void kiln_build_event_encode(const struct kiln_build_event *ev, struct kiln_buf *out);
/* proto3 JSON, e.g. {"queued":{"position":"2"}} or {"log":{"stream":"STDERR","data":"…"}}. */
KILN_PUBLIC json_t *kiln_build_event_to_json(const struct kiln_build_event *ev);

/* How many bytes of output a Failed event carries at most. */
#define KILN_BUILD_EVENT_TAIL 4096

/* Turns a build call's callbacks into events. Set up with
 * kiln_build_events_init(), which fills *call's progress, output and
 * queue_position (and userdata); `phase` and `position`, if set, still see
 * every phase and queue position (with `ud`).
 * After the build, kiln_build_events_end() emits Completed or Failed. */
typedef void (*kiln_build_event_fn)(void *ud, const struct kiln_build_event *ev);
struct kiln_build_events {
        kiln_build_event_fn emit;
        void *ud;
        void (*phase)(void *ud, const char *phase);
        void (*position)(void *ud, size_t ahead);
        bool started, cached, joined;
        uint8_t tail[KILN_BUILD_EVENT_TAIL]; /* a ring of the last output */
        size_t tail_len, tail_pos;
};

KILN_PUBLIC void kiln_build_events_init(struct kiln_build_events *e, kiln_build_event_fn emit,
                                        void *ud, struct kiln_build_call *call);
/* r and build/err: what kiln_build_service_build() gave. */
KILN_PUBLIC void kiln_build_events_end(struct kiln_build_events *e, int r,
                                       const struct kiln_build *build,
                                       const struct kiln_error *err);
