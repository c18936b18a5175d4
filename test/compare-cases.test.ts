/**
 * The published test cases of json-diff (andreyvit), microdiff, deep-diff (flitbit) and Diffy
 * (DifferenceSpec, JsonLifterSpec), restated as JSON bodies, plus the false "equal" verdicts of issue
 * 13. Each row says what a person reading the two answers would call the difference: the verdict and
 * the exact set of (concrete path, kind). Cases of those suites that JSON cannot express (Dates,
 * RegExps, NaN, cycles, Scala Long vs Int) are left out.
 */
import { describe, expect, it } from 'vitest';
import { BUILTIN_COMPARE, type CompareSettings } from '../src/config/load.js';
import { compareResponses, compileRules, type Captured } from '../src/compare/index.js';

interface Case {
  name: string;
  legacy: string | Buffer;
  candidate: string | Buffer;
  /** Expected (path, kind) set; empty means the answers are equal. */
  want: string[];
  contentType?: string;
  rules?: Partial<CompareSettings>;
  headers?: [Record<string, string>, Record<string, string>];
}

const J = JSON.stringify;

function capture(body: string | Buffer, contentType: string, headers: Record<string, string> = {}): Captured {
  return { status: 200, headers: { 'content-type': contentType, ...headers }, body: Buffer.isBuffer(body) ? body : Buffer.from(body), truncated: false };
}

/** Twenty records without an identity field, as a list page would hold them. */
const page = (from: number): string => J(Array.from({ length: 20 }, (_, i) => ({ sku: `s-${from + i}`, qty: from + i })));

const cases: Record<string, Case[]> = {
  'json-diff': [
    { name: 'two equal numbers', legacy: '42', candidate: '42', want: [] },
    { name: 'two equal strings', legacy: '"foo"', candidate: '"foo"', want: [] },
    { name: 'two different numbers', legacy: '42', candidate: '10', want: ['$ value'] },
    { name: 'two empty objects', legacy: '{}', candidate: '{}', want: [] },
    { name: 'objects with the same members in another order', legacy: J({ foo: 42, bar: 10 }), candidate: J({ bar: 10, foo: 42 }), want: [] },
    { name: 'equal nested objects', legacy: J({ foo: 42, bar: { bbbar: 10, bbboz: 11 } }), candidate: J({ foo: 42, bar: { bbbar: 10, bbboz: 11 } }), want: [] },
    { name: 'a member gone', legacy: J({ foo: 42, bar: 10 }), candidate: J({ bar: 10 }), want: ['$.foo missing'] },
    { name: 'a member added', legacy: J({ bar: 10 }), candidate: J({ foo: 42, bar: 10 }), want: ['$.foo extra'] },
    { name: 'a member changed', legacy: J({ foo: 42 }), candidate: J({ foo: 10 }), want: ['$.foo value'] },
    {
      name: 'a nested member changed and another gone',
      legacy: J({ foo: 42, bar: { bbbar: 10, bbboz: 11 } }),
      candidate: J({ foo: 42, bar: { bbbar: 12 } }),
      want: ['$.bar.bbbar value', '$.bar.bbboz missing'],
    },
    { name: 'equal arrays of scalars', legacy: '[10,20,30]', candidate: '[10,20,30]', want: [] },
    { name: 'a scalar removed from the middle', legacy: '[10,20,30]', candidate: '[10,30]', want: ['$ length', '$[1] missing'] },
    { name: 'a scalar inserted in the middle', legacy: '[10,30]', candidate: '[10,20,30]', want: ['$ length', '$[1] extra'] },
    { name: 'a scalar appended', legacy: '[10,20]', candidate: '[10,20,30]', want: ['$ length', '$[2] extra'] },
    { name: 'equal arrays of objects', legacy: J([{ foo: 10 }, { foo: 20 }, { foo: 30 }]), candidate: J([{ foo: 10 }, { foo: 20 }, { foo: 30 }]), want: [] },
    { name: 'arrays of one empty object', legacy: '[{}]', candidate: '[{}]', want: [] },
    { name: 'arrays of one empty array', legacy: '[[]]', candidate: '[[]]', want: [] },
    { name: 'repeated equal objects', legacy: J([{ a: 1, b: 2 }, { a: 1, b: 2 }]), candidate: J([{ a: 1, b: 2 }, { a: 1, b: 2 }]), want: [] },
    { name: 'an object removed from the middle', legacy: J([{ foo: 10 }, { foo: 20 }, { foo: 30 }]), candidate: J([{ foo: 10 }, { foo: 30 }]), want: ['$ length', '$[1] missing'] },
    { name: 'an object inserted in the middle', legacy: J([{ foo: 10 }, { foo: 30 }]), candidate: J([{ foo: 10 }, { foo: 20 }, { foo: 30 }]), want: ['$ length', '$[1] extra'] },
    {
      name: 'one member of one object in an array changed',
      legacy: J([{ foo: 10, bar: { bbbar: 10, bbboz: 11 } }, { foo: 20, bar: { bbbar: 50, bbboz: 25 } }, { foo: 30, bar: { bbbar: 92, bbboz: 34 } }]),
      candidate: J([{ foo: 10, bar: { bbbar: 10, bbboz: 11 } }, { foo: 21, bar: { bbbar: 50, bbboz: 25 } }, { foo: 30, bar: { bbbar: 92, bbboz: 34 } }]),
      want: ['$[1].foo value'],
    },
  ],
  microdiff: [
    { name: 'a new member', legacy: J({ test: true }), candidate: J({ test: true, test2: true }), want: ['$.test2 extra'] },
    { name: 'a changed boolean', legacy: J({ test: true }), candidate: J({ test: false }), want: ['$.test value'] },
    { name: 'a removed member', legacy: J({ test: true, test2: true }), candidate: J({ test: true }), want: ['$.test2 missing'] },
    { name: 'an object replaced by null', legacy: J({ object: { test: true } }), candidate: J({ object: null }), want: ['$.object type'] },
    { name: 'null replaced by an object', legacy: J({ object: null }), candidate: J({ object: { test: true } }), want: ['$.object type'] },
    { name: 'an object replaced by a string', legacy: J({ object: { test: true } }), candidate: J({ object: 'string' }), want: ['$.object type'] },
    { name: 'the last element of a top-level array removed', legacy: J(['test', 'testing']), candidate: J(['test']), want: ['$ length', '$[1] missing'] },
    { name: 'an element added to a nested array', legacy: J(['test', ['test']]), candidate: J(['test', ['test', 'test2']]), want: ['$[1] length', '$[1][1] extra'] },
    { name: 'an object in an array in an object changed', legacy: J({ test: ['test', { test: true }] }), candidate: J({ test: ['test', { test: false }] }), want: ['$.test[1].test value'] },
  ],
  'deep-diff': [
    { name: 'two empty objects', legacy: '{}', candidate: '{}', want: [] },
    { name: 'an empty array became an empty object', legacy: J({ key: [] }), candidate: J({ key: {} }), want: ['$.key type'] },
    { name: 'an empty array became null', legacy: J({ key: [] }), candidate: J({ key: null }), want: ['$.key type'] },
    { name: 'an empty object became null', legacy: J({ key: {} }), candidate: J({ key: null }), want: ['$.key type'] },
    { name: 'two members added to an empty object', legacy: '{}', candidate: J({ other: 'property', another: 13.13 }), want: ['$.another extra', '$.other extra'] },
    { name: 'the only member removed', legacy: J({ one: 'property' }), candidate: '{}', want: ['$.one missing'] },
    { name: 'a string became null', legacy: J({ one: 'property' }), candidate: J({ one: null }), want: ['$.one type'] },
    { name: 'an object became an array', legacy: J({ one: 'property' }), candidate: J(['one']), want: ['$ type'] },
    { name: 'null became a string', legacy: J({ key: null }), candidate: J({ key: 'value' }), want: ['$.key type'] },
    { name: 'a nested object became null', legacy: J({ key: { nested: 'value' } }), candidate: J({ key: null }), want: ['$.key type'] },
    {
      name: 'nested values changed and an array element added',
      legacy: J({ noChange: 'same', levelOne: { levelTwo: 'value' }, arrayOne: [{ objValue: 'value' }] }),
      candidate: J({ noChange: 'same', levelOne: { levelTwo: 'another value' }, arrayOne: [{ objValue: 'new value' }, { objValue: 'more value' }] }),
      want: ['$.arrayOne length', '$.arrayOne[0].objValue value', '$.arrayOne[1] extra', '$.levelOne.levelTwo value'],
    },
    {
      name: 'records with ids swapped (bug #10): an order change, not six edits',
      legacy: J({ id: 'Release', phases: [{ id: 'Phase1', tasks: [{ id: 'Task1' }, { id: 'Task2' }] }, { id: 'Phase2', tasks: [{ id: 'Task3' }] }] }),
      candidate: J({ id: 'Release', phases: [{ id: 'Phase2', tasks: [{ id: 'Task3' }] }, { id: 'Phase1', tasks: [{ id: 'Task1' }, { id: 'Task2' }] }] }),
      want: ['$.phases order'],
    },
    { name: 'repeated elements reduced to one (bug #35)', legacy: J(['a', 'a', 'a']), candidate: J(['a']), want: ['$ length', '$[1] missing', '$[2] missing'] },
    {
      name: 'a filtered (ignored) array and other changes',
      legacy: J({ enhancement: 'Filter', numero: 11, supportedBy: ['eric'], status: 'open' }),
      candidate: J({ enhancement: 'Filter', numero: 11, supportedBy: ['eric', 'tyler'], status: 'closed', fixedBy: 'flitbit' }),
      rules: { ignore: ['$.supportedBy'] },
      want: ['$.fixedBy extra', '$.status value'],
    },
  ],
  Diffy: [
    { name: 'equal booleans', legacy: 'true', candidate: 'true', want: [] },
    { name: 'equal numbers', legacy: '1', candidate: '1', want: [] },
    { name: 'equal strings', legacy: '"hello"', candidate: '"hello"', want: [] },
    { name: 'equal sequences', legacy: '[1,2,3]', candidate: '[1,2,3]', want: [] },
    { name: 'equal maps with numeric keys (JsonLifter: keys that are not identifiers)', legacy: J({ 1: '1', 2: '2' }), candidate: J({ 1: '1', 2: '2' }), want: [] },
    { name: 'a map with a numeric key changed', legacy: J({ 1: 1 }), candidate: J({ 1: 2 }), want: ["$['1'] value"] },
    { name: 'equal records', legacy: J({ first: 'puneet', last: 'khanduri' }), candidate: J({ first: 'puneet', last: 'khanduri' }), want: [] },
    { name: 'different booleans', legacy: 'true', candidate: 'false', want: ['$ value'] },
    { name: 'different integers', legacy: '1', candidate: '2', want: ['$ value'] },
    { name: 'different strings', legacy: '"hello"', candidate: '"world"', want: ['$ value'] },
    { name: 'different decimals', legacy: '1.8', candidate: '3.9', want: ['$ value'] },
    { name: 'boolean vs number', legacy: 'true', candidate: '1', want: ['$ type'] },
    { name: 'number vs string', legacy: '1', candidate: '"hello"', want: ['$ type'] },
    { name: 'string vs decimal', legacy: '"hello"', candidate: '1.2', want: ['$ type'] },
    { name: 'string vs boolean', legacy: '"hello"', candidate: 'false', want: ['$ type'] },
    { name: 'decimal vs integer (one JSON type: a value change)', legacy: '3.2', candidate: '2', want: ['$ value'] },
    { name: 'null vs boolean', legacy: 'null', candidate: 'true', want: ['$ type'] },
    { name: 'null vs number', legacy: 'null', candidate: '1', want: ['$ type'] },
    { name: 'null vs string', legacy: 'null', candidate: '"hello"', want: ['$ type'] },
    { name: 'null vs sequence', legacy: 'null', candidate: '[1,2,3]', want: ['$ type'] },
    { name: 'null vs null', legacy: 'null', candidate: 'null', want: [] },
    { name: 'same elements in another order', legacy: J(['a', 'b', 'c']), candidate: J(['c', 'b', 'a']), want: ['$ order'] },
    {
      name: 'sequences of different size: one "a" gone, two "c" new',
      legacy: J(['a', 'a', 'b', 'b']),
      candidate: J(['a', 'b', 'b', 'c', 'c']),
      want: ['$ length', '$[1] missing', '$[3] extra', '$[4] extra'],
    },
    { name: 'same size, last element different', legacy: J(['a', 'b', 'c']), candidate: J(['a', 'b', 'd']), want: ['$[2] value'] },
    { name: 'sets that differ (compared as multisets)', legacy: '[1,2,3]', candidate: '[2,3,4]', rules: { unordered: ['$'] }, want: ['$[0] missing', '$[2] extra'] },
    {
      name: 'maps that differ in keys and in one value',
      legacy: J({ 1: 2, 2: 3, 3: 4 }),
      candidate: J({ 1: 2, 2: 4, 4: 5 }),
      want: ["$['2'] value", "$['3'] missing", "$['4'] extra"],
    },
    { name: 'records that differ in one field', legacy: J({ first: 'puneet', last: 'khanduri' }), candidate: J({ first: 'prashant', last: 'khanduri' }), want: ['$.first value'] },
    { name: 'different binaries', legacy: 'leftBuffer', candidate: 'rightBuffer', contentType: 'application/octet-stream', want: ['$ value'] },
  ],
  'issue 13: no false "equal"': [
    { name: '64-bit ids rounded by a JavaScript rewrite', legacy: J({ id: 1 }).replace('1', '1234567890123456789'), candidate: '{"id":1234567890123456800}', want: ['$.id value'] },
    { name: '2^53 + 1 vs 2^53', legacy: '[9007199254740993]', candidate: '[9007199254740992]', want: ['$[0] value'] },
    { name: 'int64 max vs int64 max + 1', legacy: '{"n":9223372036854775807}', candidate: '{"n":9223372036854775808}', want: ['$.n value'] },
    { name: 'a decimal with 20 digits vs its rounding', legacy: '{"p":19.999999999999999999}', candidate: '{"p":20}', want: ['$.p value'] },
    { name: 'two numbers beyond the float range', legacy: '{"x":1e400}', candidate: '{"x":1e401}', want: ['$.x value'] },
    { name: 'a wide id next to another difference', legacy: '{"id":9007199254740993,"n":"a"}', candidate: '{"id":9007199254740992,"n":"b"}', want: ['$.id value', '$.n value'] },
    { name: '1 vs 1.0 (the JSON text changed)', legacy: '{"n":1}', candidate: '{"n":1.0}', want: ['$.n number_format'] },
    { name: '100 vs 1e2', legacy: '{"n":100}', candidate: '{"n":1e2}', want: ['$.n number_format'] },
    { name: '1 vs 1.0 with numberFormat: lenient', legacy: '{"n":1}', candidate: '{"n":1.0}', rules: { numberFormat: 'lenient' }, want: [] },
    { name: 'the same big number in the same text', legacy: '{"id":1234567890123456789}', candidate: '{ "id": 1234567890123456789 }', want: [] },
    { name: 'the same number written two ways under an ignore rule', legacy: '{"n":1,"m":2}', candidate: '{"n":1.0,"m":2}', rules: { ignore: ['$.n'] }, want: [] },
    { name: 'the same number written two ways with the whole body ignored ($)', legacy: '{"n":1,"m":2}', candidate: '{"n":1.0,"m":2}', rules: { ignore: ['$'] }, want: [] },
    { name: 'a number text under a repeated key that JSON.parse drops', legacy: '{"v":1.0,"v":1}', candidate: '{"v":1,"v":1}', want: [] },
    { name: 'a nested repeated key that JSON.parse drops', legacy: '{"a":{"v":1.0},"a":{"v":1}}', candidate: '{"a":{"v":1},"a":{"v":1}}', want: [] },
    { name: 'a repeated key whose dropped value is an array', legacy: '{"a":[1.0],"a":[1]}', candidate: '{"a":[1]}', want: [] },
    { name: 'a repeated key whose dropped value is a deep object', legacy: '{"a":{"b":[{"c":2.50}]},"a":{"b":[{"c":2.5}]}}', candidate: '{"a":{"b":[{"c":2.5}]}}', want: [] },
    { name: 'invalid UTF-8 on both sides, different bytes', legacy: Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d]), candidate: Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xfe, 0x22, 0x7d]), want: ['$.a value'] },
    { name: 'invalid UTF-8 text bodies', legacy: Buffer.from([0x61, 0xff]), candidate: Buffer.from([0x61, 0xfe]), contentType: 'text/plain', want: ['$ value'] },
    { name: 'invalid UTF-8 vs a real U+FFFD', legacy: Buffer.from([0x61, 0xff]), candidate: Buffer.from('a\ufffd'), contentType: 'text/plain', want: ['$ value'] },
  ],
  'issue 13: changes named as a person would': [
    {
      name: 'ids turned into strings: one type change per record, plus the real change',
      legacy: J([{ id: 22, name: 'a' }, { id: 23, name: 'b' }]),
      candidate: J([{ id: '22', name: 'a' }, { id: '23', name: 'B' }]),
      want: ['$[0].id type', '$[1].id type', '$[1].name value'],
    },
    {
      name: 'ids turned into strings and the list reordered',
      legacy: J([{ id: 1, v: 'x' }, { id: 2, v: 'y' }, { id: 3, v: 'z' }]),
      candidate: J([{ id: '1', v: 'x' }, { id: '3', v: 'z' }, { id: '2', v: 'y' }, { id: '4', v: 'w' }]),
      want: ['$ length', '$ order', '$[0].id type', '$[1].id type', '$[2].id type', '$[3] extra'],
    },
    { name: 'a page shifted by one record', legacy: page(0), candidate: page(1), want: ['$[0] missing', '$[19] extra'] },
    { name: '[1,2,3] → [1,3,4]', legacy: '[1,2,3]', candidate: '[1,3,4]', want: ['$[1] missing', '$[2] extra'] },
    { name: 'a swap', legacy: '[1,2,3]', candidate: '[2,1,3]', want: ['$ order'] },
    { name: 'one element edited in place stays one change', legacy: '[1,2,3,4]', candidate: '[1,9,3,4]', want: ['$[1] value'] },
    { name: 'charset=utf-8 on JSON is implied', legacy: '{}', candidate: '{}', headers: [{ 'content-type': 'application/json' }, { 'content-type': 'application/json; charset=utf-8' }], want: [] },
    {
      name: 'charset compared as sent with jsonCharset: strict',
      legacy: '{"a":1}',
      candidate: '{"a":1}',
      rules: { jsonCharset: 'strict' },
      headers: [{ 'content-type': 'application/json' }, { 'content-type': 'application/json; charset=utf-8' }],
      want: ['header:content-type header'],
    },
    {
      name: 'media type parameters in another order and case',
      legacy: 'x',
      candidate: 'x',
      headers: [{ 'content-type': 'text/plain; format=flowed; charset=UTF-8' }, { 'content-type': 'Text/Plain;charset="utf-8"; Format=flowed' }],
      want: [],
    },
    {
      name: 'header names are case-insensitive',
      legacy: '{}',
      candidate: '{}',
      rules: { headers: ['X-Version'] },
      headers: [{ 'X-Version': '1' }, { 'x-version': '2' }],
      want: ['header:x-version header'],
    },
  ],
};

describe.each(Object.entries(cases))('%s', (_suite, rows) => {
  it.each(rows.map((r) => [r.name, r] as const))('%s', (_name, c) => {
    const rules = compileRules({ ...BUILTIN_COMPARE, ...c.rules });
    const type = c.contentType ?? 'application/json';
    const [hl, hc] = c.headers ?? [{}, {}];
    const result = compareResponses(capture(c.legacy, type, hl), capture(c.candidate, type, hc), rules, { route: 'r', method: 'GET', path: '/' });
    const got = result.differences.map((d) => `${d.path} ${d.kind}`).sort();
    expect(got).toEqual([...c.want].sort());
    expect(result.result).toBe(c.want.length ? 'mismatch' : 'match');
  });
});

describe('lossless numbers: what the examples show', () => {
  it('shows both number texts, not the rounded floats', () => {
    const rules = compileRules(BUILTIN_COMPARE);
    const r = compareResponses(capture('{"id":9007199254740993}', 'application/json'), capture('{"id":9007199254740992}', 'application/json'), rules, { route: 'r', method: 'GET', path: '/' });
    expect(r.differences).toEqual([{ field: '$.id', path: '$.id', kind: 'value', legacy: '9007199254740993', candidate: '9007199254740992' }]);
  });
});

describe('alignment keeps its work cap', () => {
  it('answers (does not give up) for a long array with thousands of scattered changes, past the exact search budget', () => {
    const a = Array.from({ length: 20_000 }, (_, i) => i);
    const b = [-1, ...a.map((x) => (x % 3 === 0 ? -x - 2 : x))];
    const rules = compileRules(BUILTIN_COMPARE);
    const r = compareResponses(capture(J(a), 'application/json'), capture(J(b), 'application/json'), rules, { route: 'r', method: 'GET', path: '/' });
    expect(r.result).toBe('mismatch');
    expect(r.differences[0]).toMatchObject({ path: '$', kind: 'length' });
    expect(r.differencesCapped).toBe(true);
  });
});
