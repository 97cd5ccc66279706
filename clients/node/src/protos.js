'use strict';
/**
 * The gateway and ingest contracts, loaded at run time from the .proto files the package ships
 * in protos/ (copied from the repository's protos/ by scripts/build-protos.js when the package
 * is installed for development, tested or packed).
 */
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', 'protos');
const PROTO_FILES = ['vidsearch/gateway/v1/gateway.proto', 'vidsearch/ingest/v1/ingest.proto'];
// Field names as written in the .proto files, int64 as strings, enums by name; types/ is
// generated with the same options (scripts/build-protos.js).
const LOADER_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

/** Loads the gateway and ingest packages: {gateway: vidsearch.gateway.v1, ingest: vidsearch.ingest.v1}. */
function loadProtos(protoRoot = PROTO_ROOT) {
  if (!fs.existsSync(path.join(protoRoot, PROTO_FILES[0]))) {
    throw new Error(`the vidsearch .proto files are missing from ${protoRoot}: in a checkout, run `
      + '`npm ci --prefix clients/node` (or `npm run prepare` there), which copies them from protos/');
  }
  const definition = protoLoader.loadSync(PROTO_FILES, { includeDirs: [protoRoot], ...LOADER_OPTIONS });
  const root = grpc.loadPackageDefinition(definition);
  return { gateway: root.vidsearch.gateway.v1, ingest: root.vidsearch.ingest.v1 };
}

module.exports = { loadProtos, PROTO_ROOT };
