/**
 * Kubernetes resource quantities ("500m", "1.5Gi", "2e3"), parsed exactly so that limits can be
 * compared: a quantity is kept as the fraction numerator/denominator of BigInts, never a float
 * (`1e308` or `0.1` must not round their way past a maximum).
 *
 *   quantity ::= [+-] number suffix,  number ::= digits | digits. | digits.digits | .digits
 *   suffix   ::= Ki | Mi | Gi | Ti | Pi | Ei | n | u | m | "" | k | M | G | T | P | E | (e|E)[+-]digits
 */
export interface Quantity {
  /** The text as given. */
  text: string;
  numerator: bigint;
  /** Always positive. */
  denominator: bigint;
}

const grammar = /^([+-]?)(\d+\.?\d*|\.\d+)(?:([eE])([+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E))?$/;

const binaryPowers: Record<string, number> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 };
const decimalPowers: Record<string, number> = { n: -9, u: -6, m: -3, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };

/** Longer texts or larger exponents are far outside anything Kubernetes stores (int64 of milli-units). */
const maxLength = 64;
const maxExponent = 64;

/** The exact value of a quantity, or undefined when the text is not one. */
export function parseQuantity(text: string): Quantity | undefined {
  if (text.length > maxLength) return undefined;
  const match = grammar.exec(text);
  if (!match) return undefined;
  const [, sign, number, exponentMark, exponentText, suffix] = match;
  const [whole = '', fraction = ''] = number!.split('.');
  let numerator = BigInt((whole || '0') + fraction) * (sign === '-' ? -1n : 1n);
  let denominator = 10n ** BigInt(fraction.length);
  let exponent10 = 0;
  if (exponentMark) exponent10 = Number(exponentText);
  else if (suffix && Object.hasOwn(decimalPowers, suffix)) exponent10 = decimalPowers[suffix]!;
  if (Math.abs(exponent10) > maxExponent) return undefined;
  if (exponent10 >= 0) numerator *= 10n ** BigInt(exponent10);
  else denominator *= 10n ** BigInt(-exponent10);
  if (suffix && Object.hasOwn(binaryPowers, suffix)) numerator *= 2n ** BigInt(binaryPowers[suffix]!);
  return { text, numerator, denominator };
}

/** -1, 0 or 1 as a is less than, equal to or more than b. */
export function compareQuantities(a: Quantity, b: Quantity): -1 | 0 | 1 {
  const left = a.numerator * b.denominator;
  const right = b.numerator * a.denominator;
  return left < right ? -1 : left > right ? 1 : 0;
}

export function isNegative(quantity: Quantity): boolean {
  return quantity.numerator < 0n;
}

/** Extended resources (GPUs) can only be requested in whole units. */
export function isWhole(quantity: Quantity): boolean {
  return quantity.numerator % quantity.denominator === 0n;
}
