//! Prometheus metrics of the HTTP face.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::report::Timings;

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub stage_seconds: HistogramVec,
    pub in_flight: IntGauge,
    pub queued: IntGauge,
}

const BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "boneage_http_requests_total",
                "HTTP requests by route and status",
            ),
            &["route", "status"],
        )?;
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "boneage_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(BUCKETS.to_vec()),
            &["route"],
        )?;
        let stage_seconds = HistogramVec::new(
            HistogramOpts::new(
                "boneage_stage_duration_seconds",
                "Pipeline stage latency of successful analyses (store: the durable commit of the result)",
            )
            .buckets(BUCKETS.to_vec()),
            &["stage"],
        )?;
        let in_flight = IntGauge::new(
            "boneage_analyses_in_flight",
            "Analyses accepted and not finished",
        )?;
        let queued = IntGauge::new("boneage_analyses_queued", "Analyses waiting for a worker")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(stage_seconds.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(queued.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            request_seconds,
            stage_seconds,
            in_flight,
            queued,
        })
    }

    pub fn observe_stages(&self, t: &Timings) {
        for (stage, ms) in [
            ("decode", t.decode),
            ("preprocess", t.preprocess),
            ("inference", t.inference),
            ("scoring", t.scoring),
            ("total", t.total),
        ] {
            self.stage_seconds
                .with_label_values(&[stage])
                .observe(ms / 1000.0);
        }
    }

    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
