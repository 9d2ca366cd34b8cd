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
        super::history::get_analysis,
        super::history::analysis_report,
        super::history::create_patient,
        super::history::find_patients,
        super::history::get_patient,
        super::history::patient_exams,
        super::history::patient_growth,
        super::history::patient_growth_svg,
        super::rescore::create_job,
        super::rescore::get_job,
        super::model_info,
        super::healthz,
        super::readyz,
        super::metrics_text,
        super::openapi_json,
        super::web::preview,
        super::web::dicom_header,
    ),
    components(schemas(
        crate::report::AnalysisReport,
        crate::model::ModelInfo,
        super::problem::Problem,
        super::history::PatientCreate,
        super::history::PatientList,
        super::history::ExamList,
        crate::growth::series::GrowthSeries,
        super::web::DicomFields,
        super::rescore::RescoreJobCreate,
        crate::store::RescoreJob,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the history routes use.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
