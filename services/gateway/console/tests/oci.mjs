// An image pushed over the OCI distribution API with plain fetch, as a build pipeline
// would: a random gzip'd tar layer, its config and the manifest, blobs uploaded
// monolithically (POST, then PUT ?digest=). The registry then notifies whoever listens.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import zlib from 'node:zlib';

export const sha256 = (bytes) => `sha256:${crypto.createHash('sha256').update(bytes).digest('hex')}`;

/** A tar archive holding one regular file. */
function tar(name, content) {
  const header = Buffer.alloc(512);
  const octal = (n, width) => `${n.toString(8).padStart(width - 1, '0')}\0`;
  header.write(name, 0);
  header.write(octal(0o644, 8), 100);
  header.write(octal(0, 8), 108);
  header.write(octal(0, 8), 116);
  header.write(octal(content.length, 12), 124);
  header.write(octal(Math.floor(Date.now() / 1000), 12), 136);
  header.write('        ', 148); // the checksum counts its own field as spaces
  header.write('0', 156);
  header.write('ustar\0', 257);
  header.write('00', 263);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const pad = Buffer.alloc((512 - (content.length % 512)) % 512);
  return Buffer.concat([header, content, pad, Buffer.alloc(1024)]);
}

async function uploadBlob(registry, repo, bytes) {
  const base = `http://${registry}`;
  const start = await fetch(`${base}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
  assert.equal(start.status, 202, `starting a blob upload: ${start.status} ${await start.text()}`);
  const location = new URL(start.headers.get('location'), base);
  location.searchParams.set('digest', sha256(bytes));
  const put = await fetch(location, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/octet-stream' },
    body: bytes,
  });
  assert.equal(put.status, 201, `uploading a blob: ${put.status} ${await put.text()}`);
}

/** Pushes a fresh random linux/amd64 image to REGISTRY (host:port, plain HTTP) as REPO:TAG; returns its manifest digest. */
export async function pushImage(registry, repo, tag) {
  const plain = tar('random.bin', crypto.randomBytes(1024));
  const layer = zlib.gzipSync(plain);
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [sha256(plain)] },
    }),
  );
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(layer), size: layer.length }],
    }),
  );
  await uploadBlob(registry, repo, layer);
  await uploadBlob(registry, repo, config);
  const put = await fetch(`http://${registry}/v2/${repo}/manifests/${tag}`, {
    method: 'PUT',
    headers: { 'Content-Type': 'application/vnd.oci.image.manifest.v1+json' },
    body: manifest,
  });
  assert.equal(put.status, 201, `pushing the manifest: ${put.status} ${await put.text()}`);
  const digest = sha256(manifest);
  assert.equal(put.headers.get('docker-content-digest'), digest, 'the registry names the digest of the bytes pushed');
  return digest;
}
