//! The OpenAPI document served at `/openapi.json`.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "boneage",
        description = "Bone-age assessment from hand radiographs: bone age, TW3 RUS stages and scores."
    ),
    paths(
        super::create_analysis,
        super::model_info,
        super::healthz,
        super::readyz,
        super::metrics_text,
        super::openapi_json,
    ),
    components(schemas(
        crate::report::AnalysisReport,
        crate::model::ModelInfo,
        super::problem::Problem,
    ))
)]
pub struct ApiDoc;
