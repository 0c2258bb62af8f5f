// The few protobuf primitives Nebula v1 certificates need, written to reproduce Go's
// proto.Marshal byte for byte: signatures and fingerprints are computed over a re-marshalled copy.

/** Growable byte sink. */
export class ProtoWriter {
  private bytes: number[] = [];

  varint(value: bigint | number): this {
    // int64 fields are two's complement on the wire: a negative number takes ten bytes.
    let v = BigInt.asUintN(64, BigInt(value));
    while (v >= 0x80n) {
      this.bytes.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.bytes.push(Number(v));
    return this;
  }

  key(field: number, wireType: 0 | 2): this {
    return this.varint((field << 3) | wireType);
  }

  lengthDelimited(field: number, data: Uint8Array): this {
    this.key(field, 2).varint(data.length);
    for (const byte of data) this.bytes.push(byte);
    return this;
  }

  packedUint32(field: number, values: readonly number[]): this {
    const inner = new ProtoWriter();
    for (const value of values) inner.varint(value >>> 0);
    return this.lengthDelimited(field, inner.finish());
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.bytes);
  }
}

export type ProtoField =
  | { field: number; wireType: 0; value: bigint }
  | { field: number; wireType: 2; value: Uint8Array }
  | { field: number; wireType: 1 | 5; value: Uint8Array };

/** Reads a protobuf message into its fields, in order; throws `fail(reason)` on malformed input. */
export function readFields(data: Uint8Array, fail: (reason: string) => Error): ProtoField[] {
  const fields: ProtoField[] = [];
  let pos = 0;
  const varint = (): bigint => {
    let result = 0n;
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (pos >= data.length) throw fail('truncated varint');
      const byte = data[pos++]!;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return BigInt.asUintN(64, result);
    }
    throw fail('varint longer than 10 bytes');
  };
  const take = (length: number): Uint8Array => {
    if (pos + length > data.length) throw fail('field runs past the end of the data');
    const slice = data.subarray(pos, pos + length);
    pos += length;
    return slice;
  };
  while (pos < data.length) {
    const key = varint();
    const field = Number(key >> 3n);
    const wireType = Number(key & 7n);
    if (field === 0) throw fail('field number 0');
    if (wireType === 0) fields.push({ field, wireType, value: varint() });
    else if (wireType === 2) {
      const length = varint();
      if (length > BigInt(data.length)) throw fail('length past the end of the data');
      fields.push({ field, wireType, value: take(Number(length)) });
    } else if (wireType === 1) fields.push({ field, wireType, value: take(8) });
    else if (wireType === 5) fields.push({ field, wireType, value: take(4) });
    else throw fail(`unsupported wire type ${wireType}`);
  }
  return fields;
}

/** Decodes packed varints (uint32 each). */
export function readPackedUint32(data: Uint8Array, fail: (reason: string) => Error): number[] {
  const values: number[] = [];
  let pos = 0;
  while (pos < data.length) {
    let result = 0n;
    let done = false;
    for (let shift = 0n; shift < 70n && pos < data.length; shift += 7n) {
      const byte = data[pos++]!;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) {
        done = true;
        break;
      }
    }
    if (!done) throw fail('truncated packed varint');
    values.push(Number(BigInt.asUintN(32, result)));
  }
  return values;
}
