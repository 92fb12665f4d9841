/*
 * The certificate the daemon serves over TLS, read once at start: when it becomes valid and
 * when it expires, so that an operator hears of an expired (or nearly expired) certificate
 * from the daemon's log, at start and every day after, before clients refuse it.
 */
#ifndef GLR_TLS_H
#define GLR_TLS_H

#include <stdbool.h>
#include <stdint.h>

/* How long before expiry the daemon starts to warn. */
#define TLS_EXPIRY_WARN_DAYS 30
/* How often a running daemon looks again (the certificate does not change: time does). */
#define TLS_CHECK_EVERY_S 86400

/* The validity period of a certificate, in Unix milliseconds. */
struct tls_validity {
    int64_t not_before_ms;
    int64_t not_after_ms;
};

/*
 * Reads the first certificate of the PEM text pem (the server's own; a chain follows it)
 * into *out. Returns GLR_OK, or GLR_EINVAL when pem holds no certificate GnuTLS can read.
 */
int tls_cert_validity(const char *pem, struct tls_validity *out, char *err);

/*
 * Logs a warning naming path when, at now_ms, the certificate is expired, not valid yet,
 * or expires within TLS_EXPIRY_WARN_DAYS days. Returns true when it warned.
 */
bool tls_warn_validity(const struct tls_validity *validity, const char *path, int64_t now_ms);

#endif
