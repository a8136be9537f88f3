//! The terraform in `terraform/`, checked without terraform (no release or provider can
//! be downloaded where the tests run): every file parses with an HCL parser and prints
//! back to the same structure in terraform fmt's layout; every reference, module input
//! and generated tfvars key is declared; the IAM policy allows exactly the operations
//! lifeboat sends, each scoped to lifeboat's resources; no lifecycle rule ages out a
//! current backup.

mod fmt;
mod iam;
mod lifecycle;
mod modules;
mod tf;
mod vars;
