// Amounts in human units. The API counts money as an integer of the asset's smallest unit at
// its scale (2500000 at USD scale 9); a person reads "USD 0.0025". BigInt keeps every digit:
// no float ever touches an amount.

/** `value` (a string or number of minor units) at `scale`, as a decimal string with at least two
 * decimals (or `scale` of them when fewer) and no trailing zeros beyond. */
export function decimal(value, scale) {
  let minor;
  try {
    minor = BigInt(value ?? 0);
  } catch {
    return String(value);
  }
  const negative = minor < 0n;
  if (negative) minor = -minor;
  const digits = minor.toString().padStart(scale + 1, "0");
  const whole = digits.slice(0, digits.length - scale) || "0";
  let fraction = scale > 0 ? digits.slice(digits.length - scale) : "";
  const keep = Math.min(2, scale);
  while (fraction.length > keep && fraction.endsWith("0")) fraction = fraction.slice(0, -1);
  const grouped = whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${negative ? "-" : ""}${grouped}${fraction ? "." + fraction : ""}`;
}

/** "USD 0.0025". */
export function money(value, code, scale) {
  return `${code ?? ""} ${decimal(value, scale ?? 0)}`.trim();
}

/** Minor units as a Number for drawing a chart (precision does not matter there). */
export function approx(value, scale) {
  return Number(value) / 10 ** (scale ?? 0);
}

/** Minor units as a person would type them back into a field ("1250" at scale 2: "12.50"; no
 * grouping commas): what `minorOf` reads. */
export function typable(value, scale) {
  return decimal(value, scale).replace(/,/g, "");
}

/** A decimal a person typed ("0.25", "1,000.5") as minor units at `scale` (a string), exactly;
 * null when it is not a plain non-negative decimal with at most `scale` decimals. */
export function minorOf(text, scale) {
  const plain = String(text ?? "").trim().replace(/,/g, "");
  const match = /^(\d+)(?:\.(\d*))?$/.exec(plain);
  if (!match) return null;
  const fraction = match[2] ?? "";
  if (fraction.length > scale) return null;
  return BigInt(match[1] + fraction.padEnd(scale, "0")).toString();
}
