import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { compareQuantities, isWhole, parseQuantity } from '../../lib/k8s/quantity.ts';

const q = (text: string) => {
  const parsed = parseQuantity(text);
  if (!parsed) throw new Error(`${text} did not parse`);
  return parsed;
};
const equal = (a: string, b: string) => assert.is(compareQuantities(q(a), q(b)), 0, `${a} = ${b}`);
const less = (a: string, b: string) => assert.is(compareQuantities(q(a), q(b)), -1, `${a} < ${b}`);

const parse = suite('parseQuantity reads Kubernetes quantities exactly');
parse('decimal suffixes', () => {
  equal('500m', '0.5');
  equal('1k', '1000');
  equal('1M', '1000k');
  equal('1G', '1000M');
  equal('1T', '1000G');
  equal('1P', '1000T');
  equal('1E', '1000P');
  equal('1000n', '1u');
  equal('1000u', '1m');
});
parse('binary suffixes', () => {
  equal('1Ki', '1024');
  equal('1Mi', '1024Ki');
  equal('1Gi', '1073741824');
  equal('1Ti', '1024Gi');
  equal('1Pi', '1024Ti');
  equal('1Ei', '1024Pi');
  equal('1.5Gi', '1536Mi');
});
parse('decimal exponents, signs and bare points', () => {
  equal('1e3', '1k');
  equal('1E3', '1000');
  equal('12e-1', '1.2');
  equal('+2', '2');
  equal('.5', '500m');
  equal('5.', '5');
  assert.is(q('-1').numerator, -1n);
});
parse('no float rounding: 0.1 + 0.2 style values compare exactly', () => {
  less('0.30000000000000001', '0.3000000000000001');
  less('64', '64.000000000000000000001');
  less('1e18', '1e19');
});
parse('refuses what is not a quantity', () => {
  for (const text of [
    '',
    'lots',
    '1.2.3',
    '1Gb',
    '1 Gi',
    'Gi',
    '1e',
    '1ee3',
    '0x10',
    '1e308',
    '1e99999999',
    '1'.repeat(100),
    'NaN',
    'Infinity',
    '١',
  ]) {
    assert.is(parseQuantity(text), undefined, text);
  }
});
parse('whole numbers', () => {
  assert.ok(isWhole(q('2')));
  assert.ok(isWhole(q('2000m')));
  assert.not.ok(isWhole(q('0.5')));
  assert.not.ok(isWhole(q('1500m')));
});
parse.run();
