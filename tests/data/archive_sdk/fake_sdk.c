/*
 * TEST-ONLY stand-in for Tencent's libWeWorkFinanceSdk_C.so: the same exported
 * functions with the header's signatures, serving a scripted archive. Built by
 * the test suite (tests/it/archive.rs) with the system C compiler; never
 * shipped. The script's path is compiled in (-DFAKE_SDK_SCRIPT="..."); it is
 * read again on every GetChatData call, one directive a line:
 *
 *   R <seq> <msgid> <publickey_ver> <encrypt_random_key> <encrypt_chat_msg>
 *   E <call> <code>   the call-th GetChatData of this process returns <code>
 *   H <msgid>         DecryptData of that message hangs (once: <script>.hung marks it)
 *   D <millis>        every GetChatData first sleeps this long
 *
 * Each call is appended to <script>.log. The body scheme is the test's own:
 * encrypt_chat_msg is the hex of the plaintext XORed with the random key.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef FAKE_SDK_SCRIPT
#error "compile with -DFAKE_SDK_SCRIPT=\"/path/to/script\""
#endif

typedef struct WeWorkFinanceSdk_t { int initialised; } WeWorkFinanceSdk_t;
typedef struct Slice_t { char *buf; int len; } Slice_t;

static int calls = 0;

static void log_line(const char *fmt, ...) {
    char path[4096];
    snprintf(path, sizeof path, "%s.log", FAKE_SDK_SCRIPT);
    FILE *log = fopen(path, "a");
    if (!log) return;
    va_list args;
    va_start(args, fmt);
    vfprintf(log, fmt, args);
    va_end(args);
    fputc('\n', log);
    fclose(log);
}

static void set_slice(Slice_t *out, char *buf, int len) {
    free(out->buf);
    out->buf = buf;
    out->len = len;
}

WeWorkFinanceSdk_t *NewSdk(void) { return calloc(1, sizeof(WeWorkFinanceSdk_t)); }

int Init(WeWorkFinanceSdk_t *sdk, const char *corpid, const char *secret) {
    if (!sdk || !corpid || !secret || !*corpid || !*secret) return 10000;
    sdk->initialised = 1;
    log_line("Init %s", corpid);
    return 0;
}

void DestroySdk(WeWorkFinanceSdk_t *sdk) { free(sdk); }

Slice_t *NewSlice(void) { return calloc(1, sizeof(Slice_t)); }

void FreeSlice(Slice_t *slice) {
    if (!slice) return;
    free(slice->buf);
    free(slice);
}

char *GetContentFromSlice(Slice_t *slice) { return slice ? slice->buf : NULL; }

int GetSliceLen(Slice_t *slice) { return slice ? slice->len : 0; }

int GetChatData(WeWorkFinanceSdk_t *sdk, unsigned long long seq, unsigned int limit,
                const char *proxy, const char *passwd, int timeout, Slice_t *out) {
    (void)proxy; (void)passwd; (void)timeout;
    if (!sdk || !sdk->initialised || !out || limit < 1 || limit > 1000) return 10000;
    int call = ++calls;
    FILE *script = fopen(FAKE_SDK_SCRIPT, "r");
    if (!script) return 10003;
    size_t cap = 1 << 16, len = 0;
    char *json = malloc(cap);
    len += snprintf(json, cap, "{\"errcode\":0,\"errmsg\":\"ok\",\"chatdata\":[");
    unsigned int served = 0;
    int code = 0;
    long delay_ms = 0;
    char line[65536];
    while (fgets(line, sizeof line, script)) {
        if (line[0] == 'E') {
            int at = 0, value = 0;
            if (sscanf(line, "E %d %d", &at, &value) == 2 && at == call) code = value;
        } else if (line[0] == 'D') {
            sscanf(line, "D %ld", &delay_ms);
        } else if (line[0] == 'R' && served < limit) {
            unsigned long long record_seq = 0;
            unsigned int version = 0;
            static char msgid[256], key[4096], msg[32768];
            if (sscanf(line, "R %llu %255s %u %4095s %32767s", &record_seq, msgid, &version, key, msg) != 5)
                continue;
            if (record_seq <= seq) continue;
            size_t need = strlen(msgid) + strlen(key) + strlen(msg) + 200;
            while (len + need >= cap) { cap *= 2; json = realloc(json, cap); }
            len += snprintf(json + len, cap - len,
                            "%s{\"seq\":%llu,\"msgid\":\"%s\",\"publickey_ver\":%u,"
                            "\"encrypt_random_key\":\"%s\",\"encrypt_chat_msg\":\"%s\"}",
                            served ? "," : "", record_seq, msgid, version, key, msg);
            served++;
        }
    }
    fclose(script);
    if (delay_ms > 0) usleep((useconds_t)(delay_ms * 1000));
    log_line("GetChatData seq=%llu limit=%u code=%d", seq, limit, code);
    if (code != 0) {
        free(json);
        return code;
    }
    while (len + 4 >= cap) { cap *= 2; json = realloc(json, cap); }
    len += snprintf(json + len, cap - len, "]}");
    log_line("served %u records after seq %llu", served, seq);
    set_slice(out, json, (int)len);
    return 0;
}

static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Hangs once when the plaintext holds the msgid of an `H` line. */
static void maybe_hang(const char *plain) {
    char hung[4096];
    snprintf(hung, sizeof hung, "%s.hung", FAKE_SDK_SCRIPT);
    if (access(hung, F_OK) == 0) return;
    FILE *script = fopen(FAKE_SDK_SCRIPT, "r");
    if (!script) return;
    char line[65536], msgid[256], quoted[300];
    int hang = 0;
    while (!hang && fgets(line, sizeof line, script)) {
        if (line[0] == 'H' && sscanf(line, "H %255s", msgid) == 1) {
            snprintf(quoted, sizeof quoted, "\"%s\"", msgid);
            hang = strstr(plain, quoted) != NULL;
        }
    }
    fclose(script);
    if (!hang) return;
    FILE *mark = fopen(hung, "w");
    if (mark) fclose(mark);
    log_line("hang %s", msgid);
    sleep(120);
}

int DecryptData(const char *encrypt_key, const char *encrypt_msg, Slice_t *out) {
    if (!encrypt_key || !encrypt_msg || !out) return 10000;
    size_t key_len = strlen(encrypt_key), hex_len = strlen(encrypt_msg);
    if (key_len == 0 || hex_len % 2 != 0) return 10008;
    size_t len = hex_len / 2;
    char *plain = malloc(len + 1);
    for (size_t i = 0; i < len; i++) {
        int hi = hex_value(encrypt_msg[2 * i]), lo = hex_value(encrypt_msg[2 * i + 1]);
        if (hi < 0 || lo < 0) { free(plain); return 10006; }
        plain[i] = (char)(((hi << 4) | lo) ^ (unsigned char)encrypt_key[i % key_len]);
    }
    plain[len] = '\0';
    /* A wrong key yields noise, as the real SDK's would. */
    if (len == 0 || plain[0] != '{') { free(plain); return 10006; }
    maybe_hang(plain);
    set_slice(out, plain, (int)len);
    return 0;
}
