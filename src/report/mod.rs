//! `lifeboat report`: RPO/RTO verification reports from the catalog, for an operator
//! (table), a ticket or wiki (Markdown), a machine (JSON, versioned) and an auditor
//! (one self-contained HTML file with charts).

pub mod compute;
pub mod html;
pub mod model;
pub mod text;
