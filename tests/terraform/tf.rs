//! Reading terraform: a module's files parsed, its declarations indexed, its
//! expressions walked for the references they make.

use hcl::expr::{Expression, TraversalOperator};
use hcl::template::{Directive, Element};
use hcl::{Block, Body, Structure, Template};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The repository's `terraform/` folder.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("terraform")
}

/// Every module folder: the shared modules and the environments.
pub fn module_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for group in ["modules", "environments"] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root().join(group))
            .unwrap_or_else(|e| panic!("terraform/{group}: {e}"))
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_dir())
            .collect();
        found.sort();
        dirs.extend(found);
    }
    assert!(
        dirs.len() >= 5,
        "expected the four modules and an environment: {dirs:?}"
    );
    dirs
}

/// The `.tf` files of a folder, sorted.
pub fn tf_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tf"))
        .collect();
    files.sort();
    files
}

/// A variable declaration.
#[derive(Debug, Clone)]
pub struct Variable {
    pub file: PathBuf,
    pub has_default: bool,
    pub default: Option<Expression>,
    pub type_expr: Option<Expression>,
}

/// A module folder, parsed and indexed.
#[derive(Debug, Clone)]
pub struct Module {
    pub dir: PathBuf,
    pub files: Vec<(PathBuf, Body)>,
    pub variables: BTreeMap<String, Variable>,
    pub locals: BTreeMap<String, Expression>,
    pub outputs: BTreeSet<String>,
    /// `TYPE.NAME` of resources, `data.TYPE.NAME` of data sources.
    pub resources: BTreeSet<String>,
    /// Module calls by name: their `source` and block.
    pub calls: BTreeMap<String, (String, Block)>,
}

fn label(b: &Block, i: usize) -> String {
    b.labels()
        .get(i)
        .map(|l| l.as_str().to_string())
        .unwrap_or_else(|| panic!("block `{}` lacks label {i}", b.identifier()))
}

pub fn attr<'a>(body: &'a Body, key: &str) -> Option<&'a Expression> {
    body.attributes().find(|a| a.key() == key).map(|a| a.expr())
}

impl Module {
    pub fn load(dir: &Path) -> Module {
        let files = tf_files(dir)
            .into_iter()
            .map(|f| {
                let text = std::fs::read_to_string(&f).unwrap();
                let body = hcl::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                (f, body)
            })
            .collect();
        Module::from_files(dir, files)
    }

    /// A module from texts, for checks run on altered copies.
    pub fn from_texts(dir: &Path, texts: &[(PathBuf, String)]) -> Module {
        let files = texts
            .iter()
            .map(|(f, t)| {
                let body = hcl::parse(t).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
                (f.clone(), body)
            })
            .collect();
        Module::from_files(dir, files)
    }

    fn from_files(dir: &Path, files: Vec<(PathBuf, Body)>) -> Module {
        let mut m = Module {
            dir: dir.to_path_buf(),
            files: Vec::new(),
            variables: BTreeMap::new(),
            locals: BTreeMap::new(),
            outputs: BTreeSet::new(),
            resources: BTreeSet::new(),
            calls: BTreeMap::new(),
        };
        for (f, body) in &files {
            for b in body.blocks() {
                match b.identifier() {
                    "variable" => {
                        let default = attr(b.body(), "default").cloned();
                        let prev = m.variables.insert(
                            label(b, 0),
                            Variable {
                                file: f.clone(),
                                has_default: default.is_some(),
                                default,
                                type_expr: attr(b.body(), "type").cloned(),
                            },
                        );
                        assert!(
                            prev.is_none(),
                            "{}: variable {} declared twice",
                            f.display(),
                            label(b, 0)
                        );
                    }
                    "locals" => {
                        for a in b.body().attributes() {
                            let prev = m.locals.insert(a.key().to_string(), a.expr().clone());
                            assert!(
                                prev.is_none(),
                                "{}: local {} declared twice",
                                f.display(),
                                a.key()
                            );
                        }
                    }
                    "output" => {
                        m.outputs.insert(label(b, 0));
                    }
                    "resource" => {
                        m.resources
                            .insert(format!("{}.{}", label(b, 0), label(b, 1)));
                    }
                    "data" => {
                        m.resources
                            .insert(format!("data.{}.{}", label(b, 0), label(b, 1)));
                    }
                    "module" => {
                        let source = match attr(b.body(), "source") {
                            Some(Expression::String(s)) => s.clone(),
                            other => panic!(
                                "{}: module {}: source must be a string, not {other:?}",
                                f.display(),
                                label(b, 0)
                            ),
                        };
                        m.calls.insert(label(b, 0), (source, b.clone()));
                    }
                    _ => {}
                }
            }
        }
        m.files = files;
        m
    }

    /// The blocks of every file.
    pub fn blocks(&self) -> impl Iterator<Item = (&Path, &Block)> {
        self.files
            .iter()
            .flat_map(|(f, b)| b.blocks().map(move |blk| (f.as_path(), blk)))
    }

    /// The one block `KIND "TYPE" "NAME"` (e.g. `data`, `aws_iam_policy_document`, `lifeboat`).
    pub fn block(&self, kind: &str, ty: &str, name: &str) -> &Block {
        self.blocks()
            .map(|(_, b)| b)
            .find(|b| {
                b.identifier() == kind
                    && b.labels().len() == 2
                    && b.labels()[0].as_str() == ty
                    && b.labels()[1].as_str() == name
            })
            .unwrap_or_else(|| panic!("{}: no {kind} \"{ty}\" \"{name}\"", self.dir.display()))
    }

    /// Every `resource "TYPE"` block.
    pub fn resources_of(&self, ty: &str) -> Vec<(&Path, &Block)> {
        self.blocks()
            .filter(|(_, b)| {
                b.identifier() == "resource" && b.labels().first().is_some_and(|l| l.as_str() == ty)
            })
            .collect()
    }
}

/// One reference: where it is and the path it names (`var`, `name`; `module`, `x`,
/// `[]`, `output`...). Index and splat operators show as `[]`.
#[derive(Debug, Clone)]
pub struct Ref {
    pub file: PathBuf,
    pub path: Vec<String>,
}

impl Ref {
    pub fn text(&self) -> String {
        self.path.join(".")
    }
}

/// Collects references, knowing the names bound by `for` expressions, template `for`
/// directives and `dynamic` blocks.
pub struct Walker {
    file: PathBuf,
    bound: Vec<String>,
    pub refs: Vec<Ref>,
}

impl Walker {
    pub fn new(file: &Path) -> Self {
        Walker {
            file: file.to_path_buf(),
            bound: Vec::new(),
            refs: Vec::new(),
        }
    }

    /// The references in a top-level block. The `terraform` block and a few meta
    /// arguments name providers or types, not values.
    pub fn block(&mut self, b: &Block) {
        if b.identifier() == "terraform" {
            return;
        }
        let is_variable = b.identifier() == "variable";
        let n = self.bound.len();
        if b.identifier() == "dynamic" {
            let name = match attr(b.body(), "iterator") {
                Some(Expression::Variable(v)) => v.to_string(),
                _ => b
                    .labels()
                    .first()
                    .map(|l| l.as_str().to_string())
                    .unwrap_or_default(),
            };
            self.bound.push(name);
        }
        for s in b.body().iter() {
            match s {
                Structure::Attribute(a) => {
                    let skip = matches!(a.key(), "provider" | "providers" | "iterator")
                        || (is_variable && a.key() == "type");
                    if !skip {
                        self.expr(a.expr());
                    }
                }
                Structure::Block(inner) => self.block(inner),
            }
        }
        self.bound.truncate(n);
    }

    pub fn expr(&mut self, e: &Expression) {
        match e {
            Expression::Null
            | Expression::Bool(_)
            | Expression::Number(_)
            | Expression::String(_) => {}
            Expression::Array(items) => items.iter().for_each(|i| self.expr(i)),
            Expression::Object(o) => {
                for (k, v) in o {
                    if let hcl::ObjectKey::Expression(k) = k {
                        // `"key" = ...` and `(expr) = ...`: a bare name is a key, not a reference.
                        if !matches!(k, Expression::Variable(_)) {
                            self.expr(k);
                        }
                    }
                    self.expr(v);
                }
            }
            Expression::TemplateExpr(t) => {
                let tpl = Template::from_expr(t)
                    .unwrap_or_else(|err| panic!("{}: {err}", self.file.display()));
                self.template(&tpl);
            }
            Expression::Variable(v) => self.reference(v.as_str(), &[]),
            Expression::Traversal(t) => {
                for op in &t.operators {
                    if let TraversalOperator::Index(i) = op {
                        self.expr(i);
                    }
                }
                match &t.expr {
                    Expression::Variable(v) => self.reference(v.as_str(), &t.operators),
                    other => self.expr(other),
                }
            }
            Expression::FuncCall(f) => f.args.iter().for_each(|a| self.expr(a)),
            Expression::Parenthesis(p) => self.expr(p),
            Expression::Conditional(c) => {
                self.expr(&c.cond_expr);
                self.expr(&c.true_expr);
                self.expr(&c.false_expr);
            }
            Expression::Operation(op) => match op.as_ref() {
                hcl::expr::Operation::Unary(u) => self.expr(&u.expr),
                hcl::expr::Operation::Binary(b) => {
                    self.expr(&b.lhs_expr);
                    self.expr(&b.rhs_expr);
                }
            },
            Expression::ForExpr(f) => {
                self.expr(&f.collection_expr);
                let n = self.bound.len();
                self.bound.push(f.value_var.to_string());
                if let Some(k) = &f.key_var {
                    self.bound.push(k.to_string());
                }
                if let Some(k) = &f.key_expr {
                    self.expr(k);
                }
                self.expr(&f.value_expr);
                if let Some(c) = &f.cond_expr {
                    self.expr(c);
                }
                self.bound.truncate(n);
            }
            other => panic!("{}: unexpected expression {other:?}", self.file.display()),
        }
    }

    fn template(&mut self, t: &Template) {
        for el in t.elements() {
            match el {
                Element::Literal(_) => {}
                Element::Interpolation(i) => self.expr(&i.expr),
                Element::Directive(d) => match d.as_ref() {
                    Directive::If(i) => {
                        self.expr(&i.cond_expr);
                        self.template(&i.true_template);
                        if let Some(f) = &i.false_template {
                            self.template(f);
                        }
                    }
                    Directive::For(f) => {
                        self.expr(&f.collection_expr);
                        let n = self.bound.len();
                        self.bound.push(f.value_var.to_string());
                        if let Some(k) = &f.key_var {
                            self.bound.push(k.to_string());
                        }
                        self.template(&f.template);
                        self.bound.truncate(n);
                    }
                },
            }
        }
    }

    fn reference(&mut self, root: &str, ops: &[TraversalOperator]) {
        if self.bound.iter().any(|b| b == root) {
            return;
        }
        let mut path = vec![root.to_string()];
        for op in ops {
            path.push(match op {
                TraversalOperator::GetAttr(a) => a.to_string(),
                _ => "[]".to_string(),
            });
        }
        self.refs.push(Ref {
            file: self.file.clone(),
            path,
        });
    }
}

/// Every reference a module makes, outside of names bound where they are used.
pub fn references(m: &Module) -> Vec<Ref> {
    let mut refs = Vec::new();
    for (f, body) in &m.files {
        let mut w = Walker::new(f);
        for s in body.iter() {
            match s {
                Structure::Block(b) => w.block(b),
                Structure::Attribute(a) => w.expr(a.expr()),
            }
        }
        refs.extend(w.refs);
    }
    refs
}
