/* The served certificate's validity period, and the warnings about it (see tls.h). */
#include "http/tls.h"

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdint.h>
#include <string.h>

#include "base/clock.h"
#include "base/log.h"
#include "base/status.h"

#define MS_PER_DAY (86400 * (int64_t)1000)

int tls_cert_validity(const char *pem, struct tls_validity *out, char *err)
{
    gnutls_x509_crt_t cert;
    if (gnutls_x509_crt_init(&cert) != GNUTLS_E_SUCCESS)
        return glr_fail(err, GLR_ENOMEM, "out of memory");
    /* GnuTLS only reads an imported datum; its type just lacks the const. */
    gnutls_datum_t text = {(unsigned char *)(uintptr_t)pem, (unsigned)strlen(pem)};
    int rc = gnutls_x509_crt_import(cert, &text, GNUTLS_X509_FMT_PEM);
    time_t not_before = rc == GNUTLS_E_SUCCESS ? gnutls_x509_crt_get_activation_time(cert) : -1;
    time_t not_after = rc == GNUTLS_E_SUCCESS ? gnutls_x509_crt_get_expiration_time(cert) : -1;
    gnutls_x509_crt_deinit(cert);
    if (rc != GNUTLS_E_SUCCESS)
        return glr_fail(err, GLR_EINVAL, "no certificate could be read: %s", gnutls_strerror(rc));
    if (not_before == (time_t)-1 || not_after == (time_t)-1)
        return glr_fail(err, GLR_EINVAL, "the certificate has no readable validity period");
    out->not_before_ms = (int64_t)not_before * 1000;
    out->not_after_ms = (int64_t)not_after * 1000;
    return GLR_OK;
}

bool tls_warn_validity(const struct tls_validity *validity, const char *path, int64_t now_ms)
{
    char when[GLR_TIME_TEXT_MAX];
    if (now_ms >= validity->not_after_ms) {
        glr_clock_format(validity->not_after_ms, when);
        log_warn("the TLS certificate %s expired at %s: clients refuse it; replace it and "
                 "restart",
                 path, when);
        return true;
    }
    if (now_ms < validity->not_before_ms) {
        glr_clock_format(validity->not_before_ms, when);
        log_warn("the TLS certificate %s is not valid before %s: clients refuse it until then",
                 path, when);
        return true;
    }
    int64_t left_ms = validity->not_after_ms - now_ms;
    if (left_ms >= TLS_EXPIRY_WARN_DAYS * MS_PER_DAY)
        return false;
    glr_clock_format(validity->not_after_ms, when);
    long long days = (long long)(left_ms / MS_PER_DAY);
    log_warn("the TLS certificate %s expires at %s, in %lld day%s: replace it and restart", path,
             when, days, days == 1 ? "" : "s");
    return true;
}
