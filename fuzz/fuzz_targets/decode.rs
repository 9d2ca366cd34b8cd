//! The decode entry point of every upload (`decode::decode_upload`: DICOM, PNG,
//! TIFF, JPEG) on arbitrary bytes: it must return Ok or a 4xx error, never panic,
//! hang or allocate beyond the limits. Limits are tighter than the service's so that
//! each input runs fast; the code paths are the same.
//!
//! The DICOM codecs run inside `catch_unwind` in `boneage::dicom` (a panic there
//! becomes `corrupt_image`, as in the service). libfuzzer-sys's panic hook would
//! abort even on such a contained panic, so the hook is made silent: a panic that
//! escapes the decoder still aborts at the FFI boundary and is reported.
#![no_main]

use boneage::decode::{decode_upload, DecodeLimits};
use libfuzzer_sys::fuzz_target;

static QUIET_PANICS: std::sync::Once = std::sync::Once::new();

fuzz_target!(|data: &[u8]| {
    QUIET_PANICS.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let limits = DecodeLimits {
        max_width: 2048,
        max_height: 2048,
        max_pixels: 2_000_000,
        min_side: 16,
    };
    match decode_upload(data, &limits) {
        Ok(d) => {
            let n = d.image.width as usize * d.image.height as usize;
            assert_eq!(d.image.pixels.len(), n, "pixel buffer matches the size");
            assert!(n as u64 <= limits.max_pixels);
        }
        Err(e) => assert!((400..500).contains(&e.status()), "{}: {e}", e.code()),
    }
});
