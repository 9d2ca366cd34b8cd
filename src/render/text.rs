//! Every visible string of the chart and the report, in English and simplified
//! Chinese. Numbers are formatted by the callers; strings that hold a number are
//! functions of [`Lang`].

use super::Lang;
use crate::Sex;

/// The fixed strings of one language.
pub(crate) struct Words {
    // --- chart
    pub ba_title: &'static str,
    pub ca_axis: &'static str,
    pub ba_axis: &'static str,
    pub identity: &'static str,
    pub band: &'static str,
    pub patient_ba: &'static str,
    pub height_title: &'static str,
    pub age_axis: &'static str,
    pub height_axis: &'static str,
    pub patient_height: &'static str,
    pub percentiles: &'static str,
    pub adult_legend: &'static str,
    pub no_ba_data: &'static str,
    pub no_height_data: &'static str,
    pub no_curves: &'static str,
    pub chart_failed: &'static str,
    // --- report
    pub doc_title: &'static str,
    pub report_date: &'static str,
    pub analysis_id: &'static str,
    pub analysed_at: &'static str,
    pub patient: &'static str,
    pub external_id: &'static str,
    pub name: &'static str,
    pub sex: &'static str,
    pub birth_date: &'static str,
    pub no_patient: &'static str,
    pub patient_not_loaded: &'static str,
    pub exam: &'static str,
    pub exam_date: &'static str,
    pub chronological_age: &'static str,
    pub height: &'static str,
    pub weight: &'static str,
    pub height_for_age: &'static str,
    pub image: &'static str,
    pub not_given: &'static str,
    pub result: &'static str,
    pub bone_age: &'static str,
    pub interval_90: &'static str,
    pub ba_minus_ca: &'static str,
    pub gp_sds: &'static str,
    pub interpolated: &'static str,
    pub at_table_row: &'static str,
    pub no_ca: &'static str,
    pub tw3_score: &'static str,
    pub tw3_bone_age: &'static str,
    pub tw3_caveat: &'static str,
    pub joints: &'static str,
    pub col_bone: &'static str,
    pub col_stage: &'static str,
    pub col_probability: &'static str,
    pub col_score: &'static str,
    pub col_basis: &'static str,
    /// Expands the bone abbreviations (empty where the names are written out).
    pub bone_key: &'static str,
    pub col_region: &'static str,
    pub basis_joint_region: &'static str,
    pub basis_joint_region_long: &'static str,
    pub basis_supervised: &'static str,
    pub basis_supervised_long: &'static str,
    pub basis_typical: &'static str,
    pub basis_typical_long: &'static str,
    pub basis_unknown_long: &'static str,
    pub quality: &'static str,
    pub decision: &'static str,
    pub accepted: &'static str,
    pub exposure: &'static str,
    pub shape_residual: &'static str,
    pub model_sd: &'static str,
    pub not_checked: &'static str,
    pub corrections: &'static str,
    pub none: &'static str,
    pub inverted: &'static str,
    pub mirrored: &'static str,
    pub passes: &'static str,
    pub laterality: &'static str,
    pub left: &'static str,
    pub right: &'static str,
    pub chart: &'static str,
    pub adult_height: &'static str,
    pub col_method: &'static str,
    pub col_predicted: &'static str,
    pub col_inputs: &'static str,
    pub col_table: &'static str,
    pub col_error: &'static str,
    pub col_notes: &'static str,
    pub not_applied: &'static str,
    pub adult_from_series: &'static str,
    pub no_adult_height: &'static str,
    pub model: &'static str,
    pub validated_for: &'static str,
    pub not_a_device: &'static str,
}

pub(crate) const EN: Words = Words {
    ba_title: "Bone age vs chronological age",
    ca_axis: "Chronological age (years)",
    ba_axis: "Bone age (years)",
    identity: "Bone age = chronological age",
    band: "Greulich–Pyle ±2 SD band",
    patient_ba: "Patient (bar: 90% interval)",
    height_title: "Height-for-age",
    age_axis: "Age (years)",
    height_axis: "Height (cm)",
    patient_height: "Patient's height",
    percentiles: "Percentiles P3–P97 (P50 bold)",
    adult_legend: "Predicted adult height (at 18 y)",
    no_ba_data: "No data: no exam with a known chronological age",
    no_height_data: "No data: no height measured",
    no_curves: "No reference curves",
    chart_failed: "The chart could not be drawn",
    doc_title: "Bone-age report",
    report_date: "Report date",
    analysis_id: "Analysis",
    analysed_at: "Analysed",
    patient: "Patient",
    external_id: "Patient ID",
    name: "Name",
    sex: "Sex",
    birth_date: "Date of birth",
    no_patient: "No patient: anonymous analysis",
    patient_not_loaded: "Patient record not included",
    exam: "Exam",
    exam_date: "Exam date",
    chronological_age: "Chronological age",
    height: "Height",
    weight: "Weight",
    height_for_age: "Height-for-age",
    image: "Image",
    not_given: "not given",
    result: "Result",
    bone_age: "Bone age (model)",
    interval_90: "90% interval",
    ba_minus_ca: "Bone age − chronological age",
    gp_sds: "Bone-age SDS (Greulich–Pyle)",
    interpolated: "interpolated between table rows",
    at_table_row: "at a table row",
    no_ca: "no chronological age",
    tw3_score: "TW3 RUS score",
    tw3_bone_age: "TW3 RUS bone age",
    tw3_caveat: "The TW3 RUS score and bone age are summed from these stages: use the model's \
        bone age, not the TW3 one.",
    joints: "TW3 RUS joints",
    col_bone: "Bone",
    col_stage: "Stage",
    col_probability: "Probability",
    col_score: "Score",
    col_basis: "How obtained",
    bone_key: "MC metacarpal; PP, MP, DP proximal, middle, distal phalanx; I, III, V the first, \
        third, fifth ray.",
    col_region: "Region",
    basis_joint_region: "region",
    basis_joint_region_long: "read from this joint's own region by a head trained on the \
        stage typical for the reader's bone age: a regional maturity estimate, not \
        validated against expert TW3 staging.",
    basis_supervised: "region (expert)",
    basis_supervised_long: "read from this joint's own region by a head trained on \
        expert TW stage labels.",
    basis_typical: "typical",
    basis_typical_long: "from the whole image: restates the global bone-age estimate in \
        TW3 terms; not an observation of this joint.",
    basis_unknown_long: "a stage basis this version does not know.",
    quality: "Quality control",
    decision: "Decision",
    accepted: "accepted",
    exposure: "Exposure p1 / p99 / mean",
    shape_residual: "Shape-fit residual",
    model_sd: "Model SD",
    not_checked: "not checked",
    corrections: "Corrections",
    none: "none",
    inverted: "grey scale inverted",
    mirrored: "mirrored (right hand)",
    passes: "Model passes",
    laterality: "Laterality",
    left: "left",
    right: "right",
    chart: "Growth chart",
    adult_height: "Predicted adult height",
    col_method: "Method",
    col_predicted: "Predicted",
    col_inputs: "Inputs",
    col_table: "Table",
    col_error: "Stated error",
    col_notes: "Notes",
    not_applied: "Not applied",
    adult_from_series: "From the patient's growth series, at the latest exam with a height",
    no_adult_height: "No prediction",
    model: "Model",
    validated_for: "What the model is validated for",
    not_a_device: "This software is not a medical device. The report does not replace \
        a radiologist's reading.",
};

pub(crate) const ZH: Words = Words {
    ba_title: "骨龄与生活年龄",
    ca_axis: "生活年龄（岁）",
    ba_axis: "骨龄（岁）",
    identity: "骨龄 = 生活年龄",
    band: "Greulich–Pyle ±2 SD 范围",
    patient_ba: "患者（竖线：90% 区间）",
    height_title: "年龄别身高",
    age_axis: "年龄（岁）",
    height_axis: "身高（cm）",
    patient_height: "患者身高",
    percentiles: "百分位线 P3–P97（P50 加粗）",
    adult_legend: "预测成年身高（标于 18 岁）",
    no_ba_data: "无数据：没有已知生活年龄的检查",
    no_height_data: "无数据：未测量身高",
    no_curves: "无参考曲线",
    chart_failed: "无法绘制图表",
    doc_title: "骨龄评估报告",
    report_date: "报告日期",
    analysis_id: "分析编号",
    analysed_at: "分析时间",
    patient: "患者",
    external_id: "患者编号",
    name: "姓名",
    sex: "性别",
    birth_date: "出生日期",
    no_patient: "无患者信息：匿名分析",
    patient_not_loaded: "未附患者档案",
    exam: "检查",
    exam_date: "检查日期",
    chronological_age: "生活年龄",
    height: "身高",
    weight: "体重",
    height_for_age: "年龄别身高",
    image: "图像",
    not_given: "未提供",
    result: "结果",
    bone_age: "骨龄（模型）",
    interval_90: "90% 区间",
    ba_minus_ca: "骨龄 − 生活年龄",
    gp_sds: "骨龄 SDS（Greulich–Pyle）",
    interpolated: "表格行间插值",
    at_table_row: "取自表格行",
    no_ca: "无生活年龄",
    tw3_score: "TW3 RUS 评分",
    tw3_bone_age: "TW3 RUS 骨龄",
    tw3_caveat: "TW3 RUS 评分与骨龄由这些分期累加得出：请以模型骨龄为准，而非 TW3 骨龄。",
    joints: "TW3 RUS 关节",
    col_bone: "骨",
    col_stage: "分期",
    col_probability: "概率",
    col_score: "评分",
    col_basis: "分期来源",
    bone_key: "",
    col_region: "区域",
    basis_joint_region: "区域",
    basis_joint_region_long: "仅由该关节自身区域读取，模型以“与读片骨龄相符的典型分期”训练：\
        属区域成熟度估计，未经专家 TW3 分期验证。",
    basis_supervised: "区域（专家）",
    basis_supervised_long: "由该关节自身区域读取，模型以专家 TW 分期标注训练。",
    basis_typical: "典型",
    basis_typical_long: "由整幅图像得出：以 TW3 分期重述整体骨龄估计，并非对该关节的观察。",
    basis_unknown_long: "本版本未知的分期来源。",
    quality: "质量控制",
    decision: "结论",
    accepted: "通过",
    exposure: "曝光 p1 / p99 / 均值",
    shape_residual: "手形拟合残差",
    model_sd: "模型标准差",
    not_checked: "未检查",
    corrections: "校正",
    none: "无",
    inverted: "灰度反转",
    mirrored: "镜像（右手）",
    passes: "模型推理次数",
    laterality: "左右侧",
    left: "左",
    right: "右",
    chart: "生长曲线",
    adult_height: "预测成年身高",
    col_method: "方法",
    col_predicted: "预测值",
    col_inputs: "输入",
    col_table: "表格",
    col_error: "公布误差",
    col_notes: "说明",
    not_applied: "未应用",
    adult_from_series: "取自患者生长序列中最近一次测量身高的检查",
    no_adult_height: "无预测",
    model: "模型",
    validated_for: "模型的验证范围",
    not_a_device: "本软件不是医疗器械。本报告不能替代放射科医师的读片。",
};

pub(crate) fn text(lang: Lang) -> &'static Words {
    match lang {
        Lang::En => &EN,
        Lang::Zh => &ZH,
    }
}

/// `male`/`female` in the report; `boys`/`girls` in chart titles.
pub(crate) fn sex_word(sex: Sex, lang: Lang) -> &'static str {
    match (lang, sex) {
        (Lang::En, Sex::Male) => "male",
        (Lang::En, Sex::Female) => "female",
        (Lang::Zh, Sex::Male) => "男",
        (Lang::Zh, Sex::Female) => "女",
    }
}

pub(crate) fn sex_group(sex: Sex, lang: Lang) -> &'static str {
    match (lang, sex) {
        (Lang::En, Sex::Male) => "boys",
        (Lang::En, Sex::Female) => "girls",
        (Lang::Zh, Sex::Male) => "男",
        (Lang::Zh, Sex::Female) => "女",
    }
}

/// `Title (boys, WHO 2006/2007)` / `标题（男，WHO 2006/2007）`.
pub(crate) fn titled(title: &str, parts: &[&str], lang: Lang) -> String {
    let parts: Vec<&str> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    if parts.is_empty() {
        return title.to_string();
    }
    match lang {
        Lang::En => format!("{title} ({})", parts.join(", ")),
        Lang::Zh => format!("{title}（{}）", parts.join("，")),
    }
}

/// The short label of an adult-height method on the chart and its full name.
pub(crate) fn method_names(method: &str, lang: Lang) -> (String, String) {
    let (short, long) = match method {
        "bayley_pinneau" => ("BP", "Bayley–Pinneau (1952)"),
        "roche_wainer_thissen" => ("RWT", "Roche–Wainer–Thissen (1975)"),
        "tanner_1975" => ("TW", "Tanner et al. (1975)"),
        other => (other, other),
    };
    let long = match (lang, method) {
        (Lang::Zh, "bayley_pinneau" | "roche_wainer_thissen" | "tanner_1975") => {
            format!("{long} 法")
        }
        _ => long.to_string(),
    };
    (short.to_string(), long)
}

/// The report's name of a TW3 RUS bone: the TW3 abbreviation in English (`MC III`),
/// the full name in Chinese (`第三掌骨`); the API's id when the id is unknown.
pub(crate) fn bone_name(id: &str, lang: Lang) -> String {
    let (en, zh) = match id {
        "radius" => ("Radius", "桡骨"),
        "ulna" => ("Ulna", "尺骨"),
        "mc1" => ("MC I", "第一掌骨"),
        "mc3" => ("MC III", "第三掌骨"),
        "mc5" => ("MC V", "第五掌骨"),
        "pp1" => ("PP I", "第一近节指骨"),
        "pp3" => ("PP III", "第三近节指骨"),
        "pp5" => ("PP V", "第五近节指骨"),
        "mp3" => ("MP III", "第三中节指骨"),
        "mp5" => ("MP V", "第五中节指骨"),
        "dp1" => ("DP I", "第一远节指骨"),
        "dp3" => ("DP III", "第三远节指骨"),
        "dp5" => ("DP V", "第五远节指骨"),
        _ => return id.to_string(),
    };
    match lang {
        Lang::En => en.to_string(),
        Lang::Zh => zh.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scoring::Bone;

    #[test]
    fn every_bone_has_both_names() {
        for b in Bone::ALL {
            let en = bone_name(b.id(), Lang::En);
            let zh = bone_name(b.id(), Lang::Zh);
            // the abbreviation of the bone's English name: "metacarpal III" → "MC III"
            let long = b.name();
            let expected = match long.split_once(' ') {
                None => format!("{}{}", long[..1].to_uppercase(), &long[1..]),
                Some((kind, ray)) => {
                    let k = match kind {
                        "metacarpal" => "MC",
                        "proximal" => "PP",
                        "middle" => "MP",
                        "distal" => "DP",
                        other => other,
                    };
                    format!("{k} {}", ray.rsplit(' ').next().unwrap_or(""))
                }
            };
            assert_eq!(en, expected, "{long}");
            assert!(!zh.is_ascii(), "{zh}");
        }
        assert_eq!(bone_name("femur", Lang::Zh), "femur");
    }

    #[test]
    fn titles_and_methods() {
        assert_eq!(
            titled("Height-for-age", &["boys", "WHO"], Lang::En),
            "Height-for-age (boys, WHO)"
        );
        assert_eq!(titled("身高", &["男", ""], Lang::Zh), "身高（男）");
        assert_eq!(method_names("bayley_pinneau", Lang::En).0, "BP");
        assert_eq!(
            method_names("tanner_1975", Lang::Zh).1,
            "Tanner et al. (1975) 法"
        );
        assert_eq!(method_names("new_method", Lang::En).1, "new_method");
    }
}
