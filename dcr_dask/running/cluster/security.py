"""TLS for a run: the :class:`~distributed.security.Security` settings of every connection."""

from __future__ import annotations

from pathlib import Path

from distributed.security import Security

from dcr_dask.errors import InputError
from dcr_dask.running.cluster.errors import ClusterOptionError


def make_security(
    *,
    tls: bool = False,
    security: Security | None = None,
    tls_ca_file: str | Path | None = None,
    tls_cert: str | Path | None = None,
    tls_key: str | Path | None = None,
) -> Security | None:
    """The TLS settings of a run, or None for plain TCP.

    Parameters
    ----------
    tls : bool
        Use TLS; without certificate files, a self-signed certificate made for
        this session (``Security.temporary()``, needs ``cryptography``).
    security : distributed.security.Security, optional
        Use these settings as they are.
    tls_ca_file, tls_cert, tls_key : str or Path, optional
        The certificate authority, and the certificate and private key that
        scheduler, workers and client present (the key may be inside the
        certificate file). Giving them implies ``tls``.

    Returns
    -------
    distributed.security.Security or None
        Settings that encrypt every connection and require a certificate
        signed by the CA on both sides; None if TLS is not asked for.

    Raises
    ------
    InputError
        If a certificate file does not exist.
    ClusterOptionError
        If only some of the files are given, or ``cryptography`` is missing.
    """
    files = {"--tls-ca-file": tls_ca_file, "--tls-cert": tls_cert, "--tls-key": tls_key}
    given = {option: value for option, value in files.items() if value is not None}
    if security is not None:
        if given:
            raise ClusterOptionError(
                f"give either a Security object or {', '.join(given)}, not both"
            )
        return security
    if given:
        missing = [o for o in ("--tls-ca-file", "--tls-cert") if files[o] is None]
        if missing:
            raise ClusterOptionError(
                f"TLS with certificate files needs {' and '.join(missing)} too "
                f"(given: {', '.join(given)})"
            )
        for option, value in given.items():
            if not Path(value).is_file():
                raise InputError(f"no such file (given as {option})", filename=str(value))
        ca, cert = str(tls_ca_file), str(tls_cert)
        key = None if tls_key is None else str(tls_key)
        return Security(
            tls_ca_file=ca,
            tls_client_cert=cert,
            tls_client_key=key,
            tls_scheduler_cert=cert,
            tls_scheduler_key=key,
            tls_worker_cert=cert,
            tls_worker_key=key,
            require_encryption=True,
        )
    if not tls:
        return None
    try:
        return Security.temporary()
    except ImportError as error:
        raise ClusterOptionError(
            "--tls without certificate files makes a self-signed certificate, which needs "
            "the 'cryptography' package: pip install cryptography "
            "(or give --tls-ca-file, --tls-cert and --tls-key)"
        ) from error
