//! A one-file zip for function packages in tests.

/// A zip holding one stored (uncompressed) file `name`, mode 0755, written by hand so the tests
/// need no zip tool: a function package for moto, which never runs it.
pub fn zip_with(name: &str, data: &[u8]) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let (crc, len, n) = (crc32(data), data.len() as u32, name.len() as u16);
    let mut z = Vec::new();
    // Local file header: version 10, no flags, stored, 1980-01-01 00:00.
    z.extend(0x0403_4b50u32.to_le_bytes());
    z.extend([10, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
    z.extend(crc.to_le_bytes());
    z.extend(len.to_le_bytes());
    z.extend(len.to_le_bytes());
    z.extend(n.to_le_bytes());
    z.extend(0u16.to_le_bytes());
    z.extend(name.as_bytes());
    z.extend(data);
    let central = z.len() as u32;
    // Central directory entry: made by Unix (3), mode 0755 in the external attributes.
    z.extend(0x0201_4b50u32.to_le_bytes());
    z.extend([10, 3, 10, 0, 0, 0, 0, 0, 0, 0, 0x21, 0]);
    z.extend(crc.to_le_bytes());
    z.extend(len.to_le_bytes());
    z.extend(len.to_le_bytes());
    z.extend(n.to_le_bytes());
    z.extend([0u8; 8]); // extra, comment, disk, internal attributes
    z.extend((0o100755u32 << 16).to_le_bytes());
    z.extend(0u32.to_le_bytes()); // local header offset
    z.extend(name.as_bytes());
    let central_len = z.len() as u32 - central;
    // End of central directory.
    z.extend(0x0605_4b50u32.to_le_bytes());
    z.extend([0u8; 4]);
    z.extend(1u16.to_le_bytes());
    z.extend(1u16.to_le_bytes());
    z.extend(central_len.to_le_bytes());
    z.extend(central.to_le_bytes());
    z.extend(0u16.to_le_bytes());
    z
}
