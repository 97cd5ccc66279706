'use strict';
/**
 * Channel credentials. No `tls` option means plaintext (a local stack); any `tls` option means
 * TLS, verified against the system trust store unless a CA is given, with a client certificate
 * for mutual TLS. TLS that cannot be set up is a TlsSetupError, never a plaintext fallback.
 */
const crypto = require('node:crypto');
const fs = require('node:fs');
const nodeTls = require('node:tls');
const grpc = require('@grpc/grpc-js');

/** TLS was asked for but cannot be set up (unreadable or invalid CA, certificate or key). */
class TlsSetupError extends Error {
  constructor(message, options) {
    super(`TLS was requested but cannot be set up: ${message}`, options);
    this.name = 'TlsSetupError';
  }
}

function readPem(what, file, inline) {
  if (inline != null) return Buffer.from(inline);
  if (file == null) return null;
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new TlsSetupError(`cannot read the ${what} file ${file}: ${err.message}`, { cause: err });
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

function parseCertificates(what, pem) {
  const blocks = pem.toString('latin1').match(PEM_CERTIFICATE) || [];
  if (blocks.length === 0) throw new TlsSetupError(`the ${what} holds no PEM certificate`);
  return blocks.map((block) => {
    try {
      return new crypto.X509Certificate(block);
    } catch (err) {
      throw new TlsSetupError(`the ${what} holds an invalid certificate: ${err.message}`, { cause: err });
    }
  });
}

/**
 * Credentials and channel options for `tls`:
 *   undefined / false        plaintext
 *   true or {}               TLS, server verified against the system trust store
 *   {caFile | ca}            TLS, server verified against this CA (PEM)
 *   {certFile, keyFile}      also present this client certificate (mutual TLS); or {cert, key}
 *   {serverName}             verify the server certificate for this name (grpc.ssl_target_name_override)
 */
function channelCredentials(tls) {
  if (tls === undefined || tls === null || tls === false) {
    return { credentials: grpc.credentials.createInsecure(), options: {} };
  }
  const settings = tls === true ? {} : tls;
  const ca = readPem('CA', settings.caFile, settings.ca);
  const cert = readPem('client certificate', settings.certFile, settings.cert);
  const key = readPem('client key', settings.keyFile, settings.key);
  if ((cert === null) !== (key === null)) {
    throw new TlsSetupError('mutual TLS needs both a client certificate and its key');
  }
  if (ca !== null) parseCertificates(settings.caFile ? `CA file ${settings.caFile}` : 'CA', ca);
  if (cert !== null) {
    const [leaf] = parseCertificates('client certificate', cert);
    let privateKey;
    try {
      privateKey = crypto.createPrivateKey(key);
    } catch (err) {
      throw new TlsSetupError(`the client key is not a valid PEM private key: ${err.message}`, { cause: err });
    }
    if (!leaf.checkPrivateKey(privateKey)) throw new TlsSetupError('the client certificate and key do not match');
  }
  let context;
  try {
    // Without `ca`, Node's default trust store: its bundled roots plus NODE_EXTRA_CA_CERTS (and the
    // OS store under --use-system-ca or --use-openssl-ca). grpc-js's createSsl() with no CA skips
    // NODE_EXTRA_CA_CERTS, hence a secure context of our own.
    context = nodeTls.createSecureContext({ ca: ca ?? undefined, key: key ?? undefined, cert: cert ?? undefined });
  } catch (err) {
    throw new TlsSetupError(err.message, { cause: err });
  }
  const credentials = grpc.credentials.createFromSecureContext(context);
  const options = settings.serverName ? { 'grpc.ssl_target_name_override': settings.serverName } : {};
  return { credentials, options };
}

module.exports = { channelCredentials, TlsSetupError };
