#!/usr/bin/env node
'use strict';
/**
 * Puts the package's contract inside the package, so it works once installed from its tarball:
 * copies the gateway and ingest .proto files (and the common ones they import) from the
 * repository's protos/ into ./protos, and generates TypeScript declarations for their messages
 * into ./types (proto-loader-gen-types, then tsc to .d.ts). Run by `npm ci`, `npm test` and
 * `npm pack` (the prepare and pretest scripts); both folders are build outputs, ignored by git.
 */
const fs = require('node:fs');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

const PACKAGE = path.resolve(__dirname, '..');
const SOURCE = path.resolve(PACKAGE, '..', '..', 'protos');
// The public services and what they import; the internal encoder and index services stay out.
const PROTO_DIRS = ['vidsearch/common/v1', 'vidsearch/gateway/v1', 'vidsearch/ingest/v1'];
const ENTRY_PROTOS = ['vidsearch/gateway/v1/gateway.proto', 'vidsearch/ingest/v1/ingest.proto'];
// The same loader options as src/protos.js, so the declared shapes are the ones the client sees.
const LOADER_FLAGS = ['--keepCase', '--longs=String', '--enums=String', '--defaults', '--oneofs'];

function copyProtos() {
  const target = path.join(PACKAGE, 'protos');
  fs.rmSync(target, { recursive: true, force: true });
  for (const dir of PROTO_DIRS) {
    fs.mkdirSync(path.join(target, dir), { recursive: true });
    for (const name of fs.readdirSync(path.join(SOURCE, dir)).filter((n) => n.endsWith('.proto'))) {
      fs.copyFileSync(path.join(SOURCE, dir, name), path.join(target, dir, name));
    }
  }
  return target;
}

function tsFiles(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return tsFiles(file);
    return entry.name.endsWith('.ts') ? [file] : [];
  });
}

function generateTypes(protoRoot) {
  // Inside the package, so tsc resolves @grpc/grpc-js from its node_modules.
  const generated = fs.mkdtempSync(path.join(PACKAGE, '.types-src-'));
  try {
    const genTypes = require.resolve('@grpc/proto-loader/build/bin/proto-loader-gen-types.js');
    execFileSync(process.execPath, [genTypes, ...LOADER_FLAGS, '--includeComments', '--grpcLib=@grpc/grpc-js',
      '-I', protoRoot, '-O', generated, ...ENTRY_PROTOS], { stdio: 'inherit' });
    const target = path.join(PACKAGE, 'types');
    fs.rmSync(target, { recursive: true, force: true });
    const tsc = require.resolve('typescript/bin/tsc');
    const sources = tsFiles(generated);
    execFileSync(process.execPath, [tsc, '--declaration', '--emitDeclarationOnly', '--skipLibCheck',
      '--target', 'es2020', '--module', 'commonjs', '--moduleResolution', 'node', '--types', 'node',
      '--rootDir', generated, '--outDir', target, ...sources], { stdio: 'inherit', cwd: PACKAGE });
  } finally {
    fs.rmSync(generated, { recursive: true, force: true });
  }
}

if (!fs.existsSync(SOURCE)) {
  // An unpacked tarball already carries protos/ and types/; there is nothing to build from.
  console.error(`build-protos: no ${SOURCE}; keeping the shipped protos/ and types/`);
} else {
  generateTypes(copyProtos());
}
