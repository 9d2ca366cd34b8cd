//! The doctor's page (医生端): static files from `web/`, embedded at build time and
//! served from the same origin as the API, plus two thin helpers the page needs
//! before an upload: a browser-viewable preview of any accepted image
//! (`POST /v1/preview`) and the DICOM header fields that pre-fill the form
//! (`POST /v1/dicom/header`). Both decode with the service's own decoder, under the
//! same limits and authentication as `POST /v1/analyses`, and keep nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::auth::Caller;
use super::{on_pool, AppState, Problem};
use crate::decode::{decode_upload, GreyImage};
use crate::dicom::{is_dicom, read_dicom_header};

/// The page's files: name, content type, content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../web/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/app.js"),
    ),
    (
        "i18n.js",
        "text/javascript; charset=utf-8",
        include_str!("../../web/i18n.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../web/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../web/favicon.svg"),
    ),
];

/// Scripts only from this origin, never inline. Inline styles are allowed because
/// the printable report (server HTML with its own `<style>`) is shown from a blob:
/// URL, which inherits this policy.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' blob: data:; frame-src 'self' blob:; \
     connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; \
     frame-ancestors 'self'";

/// Longest side of a preview (pixels).
pub const PREVIEW_MAX_SIDE: u32 = 1024;

/// The page's routes and its two helpers, merged into the API router.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/assets/{file}", get(asset))
        .route("/v1/preview", post(preview))
        .route("/v1/dicom/header", post(dicom_header))
}

/// `GET /`: the page.
pub async fn index(headers: HeaderMap) -> Response {
    asset_response("index.html", &headers)
}

/// `GET /assets/{file}`.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    asset_response(&file, &headers)
}

fn asset_response(name: &str, headers: &HeaderMap) -> Response {
    let Some((_, ctype, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return Problem::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no asset {:?}", name.chars().take(64).collect::<String>()),
        )
        .into_response();
    };
    // Files change only with the binary: revalidate, answer 304 when unchanged.
    let etag = format!(
        "\"{}\"",
        &hex::encode(Sha256::digest(body.as_bytes()))[..16]
    );
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut res = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, *ctype)], *body).into_response()
    };
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    res
}

/// A preview of a radiograph the browser may not be able to show (DICOM, TIFF,
/// 16-bit): decoded as the analysis decodes it (DICOM windowing, MONOCHROME1
/// inverted), as an 8-bit grey PNG no larger than 1024 px on its long side. The
/// original size is in `X-Image-Width` / `X-Image-Height`. Nothing is stored.
#[utoipa::path(
    post,
    path = "/v1/preview",
    request_body(content_type = "application/octet-stream", description = "the radiograph file as the body (DICOM, PNG, TIFF or JPEG)"),
    responses(
        (status = 200, description = "8-bit grey PNG, long side ≤ 1024 px", content_type = "image/png"),
        (status = 400, description = "missing_image", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "image_too_large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "unsupported_format", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "corrupt_image, resolution_too_low", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "overloaded", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn preview(
    State(state): State<AppState>,
    Caller(_tenant): Caller,
    body: Bytes,
) -> Result<Response, Problem> {
    if body.is_empty() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "missing_image",
            "the request body is empty: send the radiograph file as the body",
        ));
    }
    let analyzer = Arc::clone(&state.analyzer);
    let (png, w, h) = on_pool(&state, move || {
        let decoded = decode_upload(&body, analyzer.limits())?;
        let (w, h) = (decoded.image.width, decoded.image.height);
        Ok::<_, crate::error::AnalysisError>((preview_png(&decoded.image), w, h))
    })
    .await??;
    let png = png.map_err(|e| {
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the preview could not be encoded: {e}"),
        )
    })?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png".to_string()),
            (header::CACHE_CONTROL, "no-store".to_string()),
            (
                header::HeaderName::from_static("x-image-width"),
                w.to_string(),
            ),
            (
                header::HeaderName::from_static("x-image-height"),
                h.to_string(),
            ),
        ],
        png,
    )
        .into_response())
}

/// The grey image as an 8-bit PNG, downscaled (Triangle filter) so the long side is
/// at most [`PREVIEW_MAX_SIDE`].
pub fn preview_png(img: &GreyImage) -> Result<Vec<u8>, image::ImageError> {
    let bytes: Vec<u8> = img
        .pixels
        .iter()
        .map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect();
    let buf = image::GrayImage::from_raw(img.width, img.height, bytes).ok_or_else(|| {
        image::ImageError::Parameter(image::error::ParameterError::from_kind(
            image::error::ParameterErrorKind::DimensionMismatch,
        ))
    })?;
    let long = img.width.max(img.height);
    let buf = if long > PREVIEW_MAX_SIDE {
        let scale = PREVIEW_MAX_SIDE as f64 / long as f64;
        let w = ((img.width as f64 * scale).round() as u32).max(1);
        let h = ((img.height as f64 * scale).round() as u32).max(1);
        image::imageops::resize(&buf, w, h, image::imageops::FilterType::Triangle)
    } else {
        buf
    };
    let mut out = Vec::new();
    image::DynamicImage::ImageLuma8(buf)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)?;
    Ok(out)
}

/// The DICOM header fields a form can be pre-filled from. The patient's name is
/// never read.
#[derive(Debug, Serialize, ToSchema)]
pub struct DicomFields {
    /// `male` / `female` from PatientSex (`M` / `F`); null otherwise.
    pub sex: Option<String>,
    /// ISO dates.
    pub birth_date: Option<String>,
    /// StudyDate, else AcquisitionDate.
    pub exam_date: Option<String>,
    pub patient_id: Option<String>,
    /// `L`, `R`, `U` or `B`.
    pub laterality: Option<String>,
    pub modality: Option<String>,
    pub body_part_examined: Option<String>,
    pub transfer_syntax: Option<String>,
}

/// The header of a DICOM file (up to the pixel data; no pixels are decoded):
/// sex, birth date, study date, patient id and laterality, so the page can fill
/// and mark its form before the upload. Nothing is stored.
#[utoipa::path(
    post,
    path = "/v1/dicom/header",
    request_body(content_type = "application/dicom", description = "the DICOM Part 10 file as the body"),
    responses(
        (status = 200, description = "header fields", body = DicomFields),
        (status = 400, description = "missing_image", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "image_too_large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "unsupported_format: not a DICOM file", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "corrupt_image", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn dicom_header(
    State(state): State<AppState>,
    Caller(_tenant): Caller,
    body: Bytes,
) -> Result<Json<DicomFields>, Problem> {
    if body.is_empty() {
        return Err(Problem::new(
            StatusCode::BAD_REQUEST,
            "missing_image",
            "the request body is empty: send the DICOM file as the body",
        ));
    }
    if !is_dicom(&body) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_format",
            "not a DICOM Part 10 file (no DICM preamble)",
        ));
    }
    let h = on_pool(&state, move || read_dicom_header(&body)).await??;
    let sex = h
        .patient_sex
        .as_deref()
        .and_then(crate::Sex::parse)
        .map(|s| s.as_str().to_string());
    Ok(Json(DicomFields {
        sex,
        birth_date: h.patient_birth_date,
        exam_date: h.study_date.or(h.acquisition_date),
        patient_id: h.patient_id,
        laterality: h.laterality,
        modality: h.modality,
        body_part_examined: h.body_part_examined,
        transfer_syntax: h.transfer_syntax.map(str::to_string),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::SourceFormat;

    #[test]
    fn every_asset_is_embedded_and_typed() {
        for (name, ctype, body) in ASSETS {
            assert!(!body.is_empty(), "{name} is empty");
            let ext = name.rsplit('.').next().unwrap_or("");
            let want = match ext {
                "html" => "text/html",
                "js" => "text/javascript",
                "css" => "text/css",
                "svg" => "image/svg+xml",
                other => panic!("unexpected asset type {other}"),
            };
            assert!(ctype.starts_with(want), "{name}: {ctype}");
        }
        // The page loads only what is embedded, and has no inline script.
        let index = ASSETS[0].2;
        for src in index
            .split("src=\"")
            .skip(1)
            .chain(index.split("href=\"").skip(1))
        {
            let url = src.split('"').next().unwrap_or("");
            if let Some(file) = url.strip_prefix("/assets/") {
                assert!(ASSETS.iter().any(|(n, _, _)| *n == file), "{file}");
            }
        }
        assert!(!index.contains("<script>"), "inline script in index.html");
        assert!(!index.contains("http://") && !index.contains("https://"));
    }

    #[test]
    fn etag_revalidation() {
        let r = asset_response("app.css", &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        let etag = r.headers()[header::ETAG].clone();
        assert!(r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self';"));
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(
            asset_response("app.css", &h).status(),
            StatusCode::NOT_MODIFIED
        );
        assert_eq!(
            asset_response("../Cargo.toml", &h).status(),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn preview_is_downscaled_8_bit() {
        // 2048 × 1024 horizontal ramp: 1024 × 512 after the halving.
        let (w, h) = (2048u32, 1024u32);
        let pixels = (0..w * h)
            .map(|i| (i % w) as f32 / (w - 1) as f32)
            .collect();
        let img = GreyImage {
            width: w,
            height: h,
            bit_depth: 16,
            format: SourceFormat::Png,
            pixels,
        };
        let png = preview_png(&img).unwrap();
        let back = image::load_from_memory(&png).unwrap().to_luma8();
        assert_eq!(back.dimensions(), (1024, 512));
        assert_eq!(back.get_pixel(0, 256).0[0], 0);
        assert_eq!(back.get_pixel(1023, 256).0[0], 255);
        // mid-grey in the middle (the ramp crosses 0.5 there)
        let mid = back.get_pixel(512, 256).0[0] as i32;
        assert!((mid - 128).abs() <= 1, "{mid}");
        // a small image keeps its size
        let small = GreyImage {
            width: 300,
            height: 200,
            bit_depth: 8,
            format: SourceFormat::Png,
            pixels: vec![0.5; 60_000],
        };
        let back = image::load_from_memory(&preview_png(&small).unwrap()).unwrap();
        assert_eq!((back.width(), back.height()), (300, 200));
    }
}
