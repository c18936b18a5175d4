import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { BUILTIN_COMPARE, type CompareSettings } from '../src/config/load.js';
import {
  compareResponses,
  compileRules,
  isDynamicKey,
  redactDifference,
  type Captured,
  type Comparison,
  type CompiledRules,
} from '../src/compare/index.js';

const ctx = { route: 'r', method: 'GET', path: '/x' };

function settings(over: Partial<CompareSettings> = {}): CompareSettings {
  return { ...BUILTIN_COMPARE, ...over };
}

function json(value: unknown, over: Partial<Captured> = {}): Captured {
  return { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(value)), truncated: false, ...over };
}

function raw(text: string | Buffer, contentType?: string, over: Partial<Captured> = {}): Captured {
  return { status: 200, headers: contentType ? { 'content-type': contentType } : {}, body: Buffer.isBuffer(text) ? text : Buffer.from(text), truncated: false, ...over };
}

function run(a: Captured, b: Captured, rules: CompiledRules = compileRules(settings())): Comparison {
  return compareResponses(a, b, rules, ctx);
}

/** The exact set of (field, kind) pairs, sorted, so tests pin down what is and is not reported. */
function pairs(c: Comparison): string[] {
  return c.differences.map((d) => `${d.field} ${d.kind}`).sort();
}

const base = {
  id: 7,
  name: 'widget',
  price: 9.99,
  tags: ['a', 'b', 'c'],
  meta: { requestId: 'r1', version: 2 },
  owner: { id: 1, email: 'x@example.com' },
};

describe('compareResponses: kinds', () => {
  it('matches identical bodies on the fast path', () => {
    const c = run(json(base), json(base));
    expect(c).toEqual({ result: 'match', differences: [], bodyKind: 'json' });
  });

  it('takes the fast path on byte-equal bodies without parsing or running rules', () => {
    let calls = 0;
    const rules = compileRules(
      settings({
        mappings: [{ drop: '$.links' }],
        transform: () => {
          calls++;
          throw new Error('must not run');
        },
      }),
    );
    const body = { links: { self: '/x' }, n: 1 };
    expect(run(json(body), json(body), rules)).toEqual({ result: 'match', differences: [], bodyKind: 'json' });
    expect(calls).toBe(0);
    // Same bytes under different codings are not byte-equal: they are decoded and parsed.
    const gz = json(body, { headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' }, body: gzipSync(Buffer.from(JSON.stringify(body))) });
    expect(run(json(body), gz, rules)).toMatchObject({ result: 'error', error: expect.stringContaining('must not run') });
    expect(calls).toBe(1);
  });

  it('matches equal JSON with different key order and whitespace', () => {
    const a = raw('{"a":1,"b":[1,2]}', 'application/json');
    const b = raw('{ "b": [1, 2],\n "a": 1 }', 'application/json');
    expect(run(a, b).result).toBe('match');
  });

  it('reports each planted difference with the exact field and kind', () => {
    const candidate = {
      id: '7', // type
      name: 'gadget', // value
      price: 9.99,
      tags: ['a', 'b'], // length + missing element
      meta: { version: 2 }, // requestId missing
      owner: { id: 1, email: 'x@example.com', plan: 'pro' }, // extra
    };
    const c = run(json(base), json(candidate));
    expect(c.result).toBe('mismatch');
    expect(pairs(c)).toEqual(['$.id type', '$.meta.requestId missing', '$.name value', '$.owner.plan extra', '$.tags length', '$.tags[] missing'].sort());
    const missingTag = c.differences.find((d) => d.kind === 'missing' && d.field === '$.tags[]');
    expect(missingTag).toMatchObject({ path: '$.tags[2]', legacy: 'c' });
    expect(c.differences.find((d) => d.field === '$.name')).toEqual({ field: '$.name', path: '$.name', kind: 'value', legacy: 'widget', candidate: 'gadget' });
  });

  it('reports status and header differences, with ignoreHeaders winning', () => {
    const rules = compileRules(settings({ headers: ['content-type', 'x-version', 'x-extra', 'etag', 'x-gone'], ignoreHeaders: ['etag'] }));
    const a = json(base, { status: 200, headers: { 'content-type': 'application/json', 'x-version': '1', etag: 'a', 'x-gone': 'y' } });
    // charset=utf-8 on JSON is implied (jsonCharset: implied), so a different charset is what differs here.
    const b = json(base, { status: 200, headers: { 'content-type': 'application/json; charset=iso-8859-1', 'x-version': '2', etag: 'b', 'x-extra': 'z' } });
    const c = run(a, b, rules);
    expect(pairs(c)).toEqual(['header:content-type header', 'header:x-extra extra', 'header:x-gone missing', 'header:x-version header'].sort());
  });

  it('reports only the status when the statuses differ: an error body is not compared field by field', () => {
    const rules = compileRules(settings({ headers: ['content-type', 'x-version'] }));
    const a = json(base, { status: 200, headers: { 'content-type': 'application/json', 'x-version': '1' } });
    const b = json({ error: 'boom', detail: 'internal' }, { status: 500, headers: { 'content-type': 'application/problem+json', 'x-version': '2' } });
    const c = run(a, b, rules);
    expect(c.result).toBe('mismatch');
    expect(pairs(c)).toEqual(['status status']);
  });

  it('treats content-type spelling differences as equal', () => {
    const a = json(base, { headers: { 'content-type': 'application/json; charset=UTF-8' } });
    const b = json(base, { headers: { 'content-type': 'application/json;charset=utf-8' } });
    expect(run(a, b).result).toBe('match');
  });

  it('compares every header with "*" except transfer details and ignored ones', () => {
    const rules = compileRules(settings({ headers: ['*'], ignoreHeaders: ['x-request-id'] }));
    const a = json(base, { headers: { 'content-type': 'application/json', date: 'Mon', 'content-length': '10', 'x-request-id': '1', vary: 'accept' } });
    const b = json({ ...base }, { headers: { 'content-type': 'application/json', date: 'Tue', 'content-length': '11', 'x-request-id': '2', 'cache-control': 'no-store' } });
    expect(pairs(run(a, b, rules))).toEqual(['header:cache-control extra', 'header:vary missing']);
  });

  it('reports kind order for a permutation, and nothing for an unordered path', () => {
    const a = json({ tags: ['a', 'b', 'c'], items: [{ v: 1 }, { v: 2 }] });
    const b = json({ tags: ['c', 'a', 'b'], items: [{ v: 2 }, { v: 1 }] });
    expect(pairs(run(a, b))).toEqual(['$.items order', '$.tags order']);
    const rules = compileRules(settings({ unordered: ['$.tags'] }));
    expect(pairs(run(a, b, rules))).toEqual(['$.items order']);
  });

  it('compares unordered arrays as multisets (duplicates count): a scalar left over is gone on one side, new on the other', () => {
    const rules = compileRules(settings({ unordered: ['$.items[*].roles'] }));
    const a = json({ items: [{ roles: ['admin', 'user', 'user'] }] });
    expect(run(a, json({ items: [{ roles: ['user', 'admin', 'user'] }] }), rules).result).toBe('match');
    const c = run(a, json({ items: [{ roles: ['user', 'admin', 'admin'] }] }), rules);
    expect(pairs(c)).toEqual(['$.items[].roles[] extra', '$.items[].roles[] missing']);
    const d = run(a, json({ items: [{ roles: ['user', 'admin'] }] }), rules);
    expect(pairs(d)).toEqual(['$.items[].roles length', '$.items[].roles[] missing']);
  });

  it('aligns records by id when they are moved and edited', () => {
    const a = json({ items: [{ id: 1, n: 'a' }, { id: 2, n: 'b' }, { id: 3, n: 'c' }] });
    const b = json({ items: [{ id: 3, n: 'c' }, { id: 1, n: 'A' }, { id: 2, n: 'b' }] });
    const c = run(a, b);
    expect(pairs(c)).toEqual(['$.items order', '$.items[].n value']);
    expect(c.differences.find((d) => d.kind === 'value')?.path).toBe('$.items[0].n');
  });
});

describe('compareResponses: arrays that change length', () => {
  const items = Array.from({ length: 500 }, (_, i) => ({ sku: `s${i}`, qty: i }));

  it('reports one length and one extra for one insertion in 500 items', () => {
    const inserted = [...items.slice(0, 250), { sku: 'new', qty: -1 }, ...items.slice(250)];
    const c = run(json({ items }), json({ items: inserted }));
    expect(pairs(c)).toEqual(['$.items length', '$.items[] extra']);
    expect(c.differences.find((d) => d.kind === 'extra')).toMatchObject({ path: '$.items[250]', candidate: { sku: 'new', qty: -1 } });
  });

  it('reports an insertion plus an edit further on without cascading', () => {
    const changed = items.map((x) => ({ ...x }));
    changed[400].qty = 9999;
    const inserted = [...changed.slice(0, 100), { sku: 'new', qty: -1 }, ...changed.slice(100)];
    const c = run(json({ items }), json({ items: inserted }));
    expect(pairs(c)).toEqual(['$.items length', '$.items[] extra', '$.items[].qty value']);
    expect(c.differences.find((d) => d.kind === 'value')?.path).toBe('$.items[400].qty');
  });

  it('reports a deletion in an array of primitives', () => {
    const a = Array.from({ length: 300 }, (_, i) => i);
    const b = a.filter((x) => x !== 123);
    const c = run(json(a), json(b));
    expect(pairs(c)).toEqual(['$ length', '$[] missing']);
    expect(c.differences.find((d) => d.kind === 'missing')?.path).toBe('$[123]');
  });
});

describe('compareResponses: rules', () => {
  it('ignores paths with [*] and ..', () => {
    const a = { meta: { requestId: '1', etag: 'x' }, items: [{ id: 1, updatedAt: 't1', etag: 'a' }], etag: 'r' };
    const b = { meta: { requestId: '2', etag: 'y' }, items: [{ id: 1, updatedAt: 't2', etag: 'b' }], etag: 's' };
    expect(pairs(run(json(a), json(b)))).toEqual(['$.etag value', '$.items[].etag value', '$.items[].updatedAt value', '$.meta.etag value', '$.meta.requestId value']);
    const rules = compileRules(settings({ ignore: ['$.meta.requestId', '$.items[*].updatedAt', '$..etag'] }));
    expect(run(json(a), json(b), rules)).toMatchObject({ result: 'match', differences: [] });
  });

  it('ignores a field that only one side has', () => {
    const rules = compileRules(settings({ ignore: ['$.items[*].updatedAt'] }));
    expect(run(json({ items: [{ id: 1 }] }), json({ items: [{ id: 1, updatedAt: 'x' }] }), rules).result).toBe('match');
  });

  it('applies numeric tolerance (absolute or relative)', () => {
    const a = json({ x: 100, y: 1.0, z: 5 });
    const b = json({ x: 100.5, y: 1.0000001, z: 7 });
    expect(pairs(run(a, b))).toEqual(['$.x value', '$.y value', '$.z value']);
    expect(pairs(run(a, b, compileRules(settings({ tolerance: { absolute: 1e-6, relative: 0 } }))))).toEqual(['$.x value', '$.z value']);
    expect(pairs(run(a, b, compileRules(settings({ tolerance: { absolute: 0, relative: 0.01 } }))))).toEqual(['$.z value']);
  });

  it('fixes a renamed field with a mapping, and reports it without', () => {
    const legacy = json({ fullName: 'Ada', items: [{ fullName: 'x' }, { fullName: 'y' }], total: 3 });
    const candidate = json({ name: 'Ada', items: [{ name: 'x' }, { name: 'y' }], meta: { total: 3 } });
    expect(pairs(run(legacy, candidate))).toEqual([
      '$.fullName missing',
      '$.items[].fullName missing',
      '$.items[].fullName missing',
      '$.items[].name extra',
      '$.items[].name extra',
      '$.meta extra',
      '$.name extra',
      '$.total missing',
    ]);
    const rules = compileRules(
      settings({
        mappings: [
          { rename: '$.name', to: '$.fullName' },
          { rename: '$.items[*].name', to: '$.items[*].fullName' },
          { rename: '$.meta.total', to: '$.total' },
          { drop: '$.meta' },
        ],
      }),
    );
    expect(run(legacy, candidate, rules)).toMatchObject({ result: 'match', differences: [] });
  });

  it('maps values and drops fields on the new side only', () => {
    const legacy = json({ status: 'active', n: 1 });
    const candidate = json({ status: 'ACTIVE', n: 1, links: { self: '/x' } });
    expect(pairs(run(legacy, candidate))).toEqual(['$.links extra', '$.status value']);
    const rules = compileRules(settings({ mappings: [{ map: '$.status', values: { ACTIVE: 'active' } }, { drop: '$.links' }] }));
    expect(run(legacy, candidate, rules).result).toBe('match');
    // A value map keyed by String(value) also maps numbers.
    const numeric = compileRules(settings({ mappings: [{ map: '$.n', values: { '2': 1 } }] }));
    expect(run(json({ n: 1 }), json({ n: 2 }), numeric).result).toBe('match');
  });

  it('moves a field into a new parent', () => {
    const rules = compileRules(settings({ mappings: [{ rename: '$.total', to: '$.page.total' }] }));
    expect(run(json({ page: { total: 3 } }), json({ total: 3 }), rules).result).toBe('match');
  });

  it('runs a transform after mappings and reports its exception as an error naming it', () => {
    const transform = (l: unknown, c: unknown) => ({ legacy: l, candidate: { ...(c as object), extra: undefined } });
    const ok = compileRules(settings({ transform, mappings: [{ rename: '$.b', to: '$.a' }] }));
    const res = run(json({ a: 1 }), json({ b: 1 }), ok);
    expect(pairs(res)).toEqual(['$.extra extra']);
    const throwing = compileRules(
      settings({
        transformPath: '/etc/cutover/fix-dates.mjs',
        transform: () => {
          throw new Error('boom');
        },
      }),
    );
    const bad = run(json({ a: 1 }), json({ a: 2 }), throwing);
    expect(bad.result).toBe('error');
    expect(bad.error).toContain('/etc/cutover/fix-dates.mjs');
    expect(bad.error).toContain('boom');
  });

  it('throws a clear error on an unparsable path at compile time', () => {
    expect(() => compileRules(settings({ ignore: ['$.ok', '$.items[x'] }))).toThrow(/compare\.ignore\[1\].*\$\.items\[x/);
    expect(() => compileRules(settings({ mappings: [{ rename: '$..a', to: '$.b' }] }))).toThrow(/compare\.mappings\[0\]/);
    expect(() => compileRules(settings({ mappings: [{ rename: '$.a', to: '$.items[*].b' }] }))).toThrow(/\[\*\]/);
  });
});

describe('compareResponses: grouping', () => {
  it('collapses id-keyed maps to {*} and indices to []', () => {
    const a = { byId: { '8f3a2b1c-1d2e-4f50-9a6b-7c8d9e0f1a2b': { price: 1 }, '12345': { price: 1 } }, list: [{ a: 1 }, { a: 1 }] };
    const b = { byId: { '8f3a2b1c-1d2e-4f50-9a6b-7c8d9e0f1a2b': { price: 2 }, '12345': { price: 3 } }, list: [{ a: 1 }, { a: 2 }] };
    const c = run(json(a), json(b));
    expect(c.differences.map((d) => d.field)).toEqual(['$.byId{*}.price', '$.byId{*}.price', '$.list[].a']);
    expect(c.differences.map((d) => d.path).sort()).toEqual(["$.byId['12345'].price", "$.byId['8f3a2b1c-1d2e-4f50-9a6b-7c8d9e0f1a2b'].price", '$.list[1].a'].sort());
  });

  it('keeps schema-like keys and collapses dynamic ones', () => {
    for (const k of ['42', '2024-05-01', 'deadbeefcafebabe', '01ARZ3NDEKTSV4RRFFQ69G5FAV', 'cus_NffrFeUfNV2Hib', 'a@b.example']) expect(isDynamicKey(k), k).toBe(true);
    for (const k of ['name', 'createdAt', 'created_timestamp', 'address_line1', 'shipping_address_line12', 'v2']) expect(isDynamicKey(k), k).toBe(false);
  });
});

describe('compareResponses: encodings and body kinds', () => {
  const body = Buffer.from(JSON.stringify(base));

  it('decodes gzip, deflate and br before comparing', () => {
    const plain = raw(body, 'application/json');
    for (const [enc, bytes] of [
      ['gzip', gzipSync(body)],
      ['br', brotliCompressSync(body)],
      ['deflate', deflateSync(body)],
    ] as const) {
      const c = raw(bytes, 'application/json', { headers: { 'content-type': 'application/json', 'content-encoding': enc } });
      expect(run(plain, c), enc).toMatchObject({ result: 'match', bodyKind: 'json' });
      const changed = gzipSync(Buffer.from(JSON.stringify({ ...base, price: 1 })));
      const d = raw(changed, 'application/json', { headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } });
      expect(pairs(run(c, d)), enc).toEqual(['$.price value']);
    }
  });

  it('treats a body that decodes past maxBodyBytes as truncated', () => {
    const big = Buffer.from(JSON.stringify({ s: 'x'.repeat(5000) }));
    const rules = compileRules(settings({ maxBodyBytes: 1000 }));
    const a = raw(gzipSync(big), 'application/json', { headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } });
    const b = raw(brotliCompressSync(big), 'application/json', { headers: { 'content-type': 'application/json', 'content-encoding': 'br' } });
    expect(run(a, b, rules)).toMatchObject({ result: 'error', error: 'body_truncated' });
  });

  it('does not parse truncated captures: error when all else is equal, mismatch when status differs', () => {
    expect(run(json(base, { truncated: true }), json(base))).toMatchObject({ result: 'error', error: 'body_truncated', differences: [] });
    const c = run(json(base, { truncated: true }), json(base, { status: 500 }));
    expect(c.result).toBe('mismatch');
    expect(pairs(c)).toEqual(['status status']);
  });

  it('reports a decoding failure as an error', () => {
    const c = run(json(base), raw(Buffer.from('not gzip'), 'application/json', { headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' } }));
    expect(c.result).toBe('error');
    expect(c.error).toMatch(/^decode_failed: new body: gzip/);
  });

  it('compares text with a line summary', () => {
    const a = raw('line one\nline two\nline three\n', 'text/plain');
    const b = raw('line one\nline 2\nline three\n', 'text/plain; charset=utf-8');
    const rules = compileRules(settings({ headers: [] }));
    const c = run(a, b, rules);
    expect(c.bodyKind).toBe('text');
    expect(c.differences).toEqual([{ field: '$', path: '$', kind: 'value', legacy: 'line 2 of 4: "line two"', candidate: 'line 2 of 4: "line 2"' }]);
    expect(run(raw('<a>1</a>', 'application/xml'), raw('<a>1</a>', 'application/xml'), rules)).toMatchObject({ result: 'match', bodyKind: 'text' });
  });

  it('compares binary bodies by digest', () => {
    const a = raw(Buffer.from([0, 1, 2, 3, 255]), 'image/png');
    const b = raw(Buffer.from([0, 1, 2, 4, 255]), 'image/png');
    const c = run(a, b);
    expect(c.bodyKind).toBe('binary');
    expect(pairs(c)).toEqual(['$ value']);
    expect(String(c.differences[0].legacy)).toMatch(/^sha256:[0-9a-f]{64} \(5 bytes\)$/);
  });

  it('sniffs the kind when there is no content-type', () => {
    const rules = compileRules(settings({ headers: [] }));
    expect(run(raw('{"a":1}'), raw('{"a":2}'), rules)).toMatchObject({ bodyKind: 'json', differences: [{ field: '$.a', kind: 'value' }] });
    expect(run(raw('hello'), raw('hullo'), rules).bodyKind).toBe('text');
    expect(run(raw(Buffer.from([0, 159, 146, 150])), raw(Buffer.from([0, 1])), rules).bodyKind).toBe('binary');
  });

  it('reports an empty body on one side and invalid JSON on one side', () => {
    expect(pairs(run(json(base), raw('', 'application/json')))).toEqual(['$ missing']);
    expect(run(raw('', 'application/json'), raw('', 'application/json'))).toMatchObject({ result: 'match', bodyKind: 'empty' });
    const c = run(json(base), raw('{oops', 'application/json'));
    expect(pairs(c)).toEqual(['$ type']);
    expect(String(c.differences[0].candidate)).toMatch(/^invalid JSON/);
  });
});

describe('compareResponses: robustness', () => {
  it('walks 10,000 levels of nesting without overflowing the stack', () => {
    const depth = 10_000;
    const deep = (leaf: number) => '{"a":'.repeat(depth) + String(leaf) + '}'.repeat(depth);
    const deepArr = (leaf: number) => '['.repeat(depth) + String(leaf) + ']'.repeat(depth);
    expect(run(raw(deep(1), 'application/json'), raw(` ${deep(1)}`, 'application/json')).result).toBe('match');
    const c = run(raw(deep(1), 'application/json'), raw(deep(2), 'application/json'));
    expect(c.result).toBe('mismatch');
    expect(c.differences).toHaveLength(1);
    expect(c.differences[0].kind).toBe('value');
    expect(c.differences[0].field.length).toBeLessThan(300);
    const d = run(raw(deepArr(1), 'application/json'), raw(deepArr(2), 'application/json'));
    expect(d.differences.map((x) => x.kind)).toEqual(['value']);
  });

  it('neither crashes on nor is polluted by __proto__ and constructor keys', () => {
    const a = raw('{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}},"x":1}', 'application/json');
    const b = raw('{"__proto__":{"polluted":2},"x":1}', 'application/json');
    const c = run(a, b);
    expect(pairs(c)).toEqual(['$.__proto__.polluted value', '$.constructor missing'].sort());
    // The other way round: `constructor` must not be found on Object.prototype.
    expect(pairs(run(b, a))).toEqual(['$.__proto__.polluted value', '$.constructor extra'].sort());
    const rules = compileRules(settings({ mappings: [{ rename: '$.x', to: '$.__proto__.polluted' }, { drop: '$.constructor' }] }));
    run(a, b, rules);
    run(b, a, rules);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.prototype).not.toHaveProperty('polluted');
  });

  it('never mutates the captured buffers', () => {
    const a = json(base);
    const b = json({ ...base, name: 'x' });
    const copies = [Buffer.from(a.body), Buffer.from(b.body)];
    run(a, b, compileRules(settings({ mappings: [{ drop: '$.name' }] })));
    expect(a.body.equals(copies[0]) && b.body.equals(copies[1])).toBe(true);
  });

  it('caps the number of differences', () => {
    const a = Array.from({ length: 2000 }, (_, i) => i);
    // Every element changed and none shifted (x + 1 would be a shift by one: 1 missing + 1 extra).
    const c = run(json(a), json(a.map((x) => -x - 1)));
    expect(c.differences).toHaveLength(500);
    expect(c.differencesCapped).toBe(true);
  });
});

describe('redactDifference', () => {
  const rules = compileRules(settings({ sensitive: ['$.user.ssn', '$..card'] }));

  it('redacts sensitive paths, credential fields and credential-looking values', () => {
    const a = { user: { ssn: '111', name: 'a', password: 'p1' }, pay: { card: '4111' }, note: 'Bearer abcdefghijk', obj: { deep: { card: '1' } } };
    const b = { user: { ssn: '222', name: 'b', password: 'p2' }, pay: { card: '4242' }, note: 'Bearer zyxwvutsrq', obj: { deep: { card: '2' } } };
    const c = run(json(a), json(b));
    const red = c.differences.map((d) => redactDifference(d, rules));
    const byPath = Object.fromEntries(red.map((d) => [d.path, [d.legacy, d.candidate]]));
    expect(byPath).toEqual({
      '$.user.ssn': ['[redacted]', '[redacted]'],
      '$.user.name': ['a', 'b'],
      '$.user.password': ['[redacted]', '[redacted]'],
      '$.pay.card': ['[redacted]', '[redacted]'],
      '$.note': ['[redacted]', '[redacted]'],
      '$.obj.deep.card': ['[redacted]', '[redacted]'],
    });
    // A whole missing object is redacted inside, and the original is left alone.
    const missing = run(json({ user: { ssn: '1', name: 'n' } }), json({})).differences[0];
    expect(redactDifference(missing, rules).legacy).toEqual({ ssn: '[redacted]', name: 'n' });
    expect(missing.legacy).toEqual({ ssn: '1', name: 'n' });
  });

  it('redacts Authorization-like header values', () => {
    const hdr = compileRules(settings({ headers: ['authorization', 'x-api-key', 'x-version'] }));
    const c = run(json(1, { headers: { authorization: 'Bearer a', 'x-api-key': 'k1', 'x-version': '1' } }), json(1, { headers: { authorization: 'Bearer b', 'x-api-key': 'k2', 'x-version': '2' } }), hdr);
    const red = c.differences.map((d) => redactDifference(d, hdr));
    expect(red.map((d) => [d.field, d.legacy, d.candidate])).toEqual([
      ['header:authorization', '[redacted]', '[redacted]'],
      ['header:x-api-key', '[redacted]', '[redacted]'],
      ['header:x-version', '1', '2'],
    ]);
  });
});

describe('the work budget', () => {
  /** Nested three-element arrays that differ at every level: `[i,[…],i]` against `[i+1,[…],i]`. */
  function nested(depth: number): [Captured, Captured] {
    let a = '0';
    let b = '1';
    for (let i = 0; i < depth; i++) {
      a = `[${i},${a},${i}]`;
      b = `[${i + 1},${b},${i}]`;
    }
    return [raw(a, 'application/json'), raw(b, 'application/json')];
  }

  it('counts the characters of the keys it builds: a deep body that differs at every level ends as too_complex', () => {
    // ~10 KB each: every level's array diff keys its whole subtree again (depth³ characters; 1.6 s
    // of one thread when only values visited were counted).
    const c = run(...nested(1000));
    expect(c.result).toBe('error');
    expect(c.error).toMatch(/^too_complex/);
  });

  it('still compares a moderately deep body in full', () => {
    const c = run(...nested(100));
    expect(c.result).toBe('mismatch');
    expect(c.differences.length).toBeGreaterThan(50);
  });
});

describe('example values', () => {
  it('show a number past a double’s range as ±Infinity, not as JSON null', () => {
    const c = run(raw('{"a":1e400}', 'application/json'), raw('{"a":-1e400}', 'application/json'));
    expect(c.differences).toEqual([expect.objectContaining({ field: '$.a', kind: 'value', legacy: 'Infinity', candidate: '-Infinity' })]);
    expect(JSON.parse(JSON.stringify(c.differences))[0]).toMatchObject({ legacy: 'Infinity', candidate: '-Infinity' });
  });
});
