'use strict';
// TLS: a server with a throwaway CA (openssl), mutual TLS, server-name checks, and the errors
// when TLS is asked for but cannot be set up. Asking for TLS never ends in plaintext.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const grpc = require('@grpc/grpc-js');
const { VidsearchClient, TlsSetupError, channelCredentials, status } = require('..');
const { fakeServer, tempFile, testCertificates } = require('./fakes');

const certs = testCertificates();

/** A fake server speaking TLS with the test CA's server certificate; client certificates required when mutual. */
async function tlsServer(t, { mutual = false } = {}) {
  const credentials = grpc.ServerCredentials.createSsl(
    mutual ? fs.readFileSync(certs.ca) : null,
    [{ private_key: fs.readFileSync(certs.serverKey), cert_chain: fs.readFileSync(certs.serverCert) }],
    mutual,
  );
  const fake = await fakeServer({}, credentials);
  t.after(() => fake.server.forceShutdown());
  return fake;
}

function searchWith(t, address, tls) {
  const client = new VidsearchClient({ gateway: address, tls, deadlineMs: 5000 });
  t.after(() => client.close());
  return client.search('secure');
}

test('TLS with the test CA and the server name reaches the server', async (t) => {
  const fake = await tlsServer(t);
  const reply = await searchWith(t, fake.address, { caFile: certs.ca, serverName: 'search.example.com' });
  assert.equal(reply.model_id, 'tiny');
});

test('a server name the certificate does not carry fails verification', async (t) => {
  const fake = await tlsServer(t);
  await assert.rejects(searchWith(t, fake.address, { caFile: certs.ca, serverName: 'other.example.com' }),
    (err) => err.code === status.UNAVAILABLE);
});

test('a server certificate from another CA fails verification', async (t) => {
  const fake = await tlsServer(t);
  await assert.rejects(searchWith(t, fake.address, { caFile: certs.otherCa, serverName: 'search.example.com' }),
    (err) => err.code === status.UNAVAILABLE);
});

test('without a CA the system trust store is used, which does not know the test CA', async (t) => {
  const fake = await tlsServer(t);
  for (const tls of [true, { serverName: 'search.example.com' }]) {
    await assert.rejects(searchWith(t, fake.address, tls), (err) => err.code === status.UNAVAILABLE,
      'the test CA is in no system trust store, so verification must fail');
  }
});

test('a server name alone means TLS, never plaintext', async (t) => {
  const plain = await fakeServer();
  t.after(() => plain.server.forceShutdown());
  await assert.rejects(searchWith(t, plain.address, { serverName: 'search.example.com' }),
    (err) => err.code === status.UNAVAILABLE);
  assert.equal(plain.calls.Search.length, 0, 'the request reached a plaintext server');
});

test('mutual TLS: the client certificate is presented, and required', async (t) => {
  const fake = await tlsServer(t, { mutual: true });
  const tls = { caFile: certs.ca, serverName: 'search.example.com' };
  const reply = await searchWith(t, fake.address, { ...tls, certFile: certs.clientCert, keyFile: certs.clientKey });
  assert.equal(reply.hits.length, 1);
  await assert.rejects(searchWith(t, fake.address, tls), (err) => err.code === status.UNAVAILABLE);
});

const notPem = tempFile('this is not a certificate\n', 'bad-ca.pem');
const SETUP_ERRORS = [
  ['a missing CA file', { caFile: '/nonexistent/ca.crt' }, /cannot read the CA file \/nonexistent\/ca.crt/],
  ['a CA file that is not PEM', { caFile: notPem }, /holds no PEM certificate/],
  ['a certificate without its key', { caFile: certs.ca, certFile: certs.clientCert }, /both a client certificate and its key/],
  ['a key without its certificate', { keyFile: certs.clientKey }, /both a client certificate and its key/],
  ['a key that is not the certificate\'s', { certFile: certs.clientCert, keyFile: certs.serverKey }, /do not match/],
  ['a key file that is not a key', { certFile: certs.clientCert, keyFile: notPem }, /not a valid PEM private key/],
];

for (const [name, tls, message] of SETUP_ERRORS) {
  test(`TLS that cannot be set up is an error: ${name}`, () => {
    assert.throws(() => channelCredentials(tls), (err) => err instanceof TlsSetupError
      && /^TLS was requested but cannot be set up: /.test(err.message) && message.test(err.message));
    assert.throws(() => new VidsearchClient({ gateway: '127.0.0.1:1', tls }), TlsSetupError);
  });
}

test('no tls setting means plaintext, for a local stack', async (t) => {
  const plain = await fakeServer();
  t.after(() => plain.server.forceShutdown());
  for (const tls of [undefined, false]) assert.equal((await searchWith(t, plain.address, tls)).model_id, 'tiny');
});
