//! Each interconnect type's provisioning workflow as an explicit state machine that records
//! who acted and when:
//!
//! ```text
//! direct   slot_assigned -> loa_issued -> cross_connect_ordered
//!            -> (v1: configuration_proposed -> configuration_approved) -> configured -> tested -> active
//! partner  submitted -> accepted | rejected;  accepted -> configured -> tested -> active
//! cloud    requested -> (AWS: cross_connect_ordered) -> configured -> tested -> active
//! ```
//!
//! Any state before `active` may be canceled. Each step names who may take it: the operator,
//! the customer (ordering the cross-connect, approving the configuration document), the
//! connectivity partner (submitting its request). A step out of order, or by the wrong party,
//! is refused and changes nothing.

use serde::{Deserialize, Serialize};

use crate::dataplane::Dataplane;

/// Where an interconnect is in its workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// A free slot was assigned (direct).
    SlotAssigned,
    /// The Letter of Authorization was issued (direct).
    LoaIssued,
    /// The customer (or, for AWS, the operator) ordered the cross-connect.
    CrossConnectOrdered,
    /// The configuration document (addressing, VLAN, MTU) awaits the customer (direct, v1).
    ConfigurationProposed,
    /// The customer approved the configuration document (direct, v1).
    ConfigurationApproved,
    /// A partner submitted a virtual-circuit request.
    Submitted,
    /// The operator accepted the partner's request.
    Accepted,
    /// The operator rejected the partner's request (final).
    Rejected,
    /// The customer requested a cloud circuit.
    Requested,
    /// The PoP is configured.
    Configured,
    /// The link was tested.
    Tested,
    /// In service.
    Active,
    /// Canceled before it was active (final).
    Canceled,
}

/// A step of a workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Issue the LOA for the assigned slot.
    IssueLoa,
    /// The cross-connect was ordered.
    OrderCrossConnect,
    /// Put the configuration document to the customer.
    ProposeConfiguration,
    /// The customer approves the configuration document.
    ApproveConfiguration,
    /// Accept a partner's request.
    Accept,
    /// Reject a partner's request, saying why.
    Reject {
        /// Why.
        reason: String,
    },
    /// The PoP was configured.
    Configure,
    /// The link test passed.
    Test,
    /// Put it in service.
    Activate,
    /// Cancel it.
    Cancel,
}

impl Step {
    fn name(&self) -> &'static str {
        match self {
            Step::IssueLoa => "issue_loa",
            Step::OrderCrossConnect => "order_cross_connect",
            Step::ProposeConfiguration => "propose_configuration",
            Step::ApproveConfiguration => "approve_configuration",
            Step::Accept => "accept",
            Step::Reject { .. } => "reject",
            Step::Configure => "configure",
            Step::Test => "test",
            Step::Activate => "activate",
            Step::Cancel => "cancel",
        }
    }
}

/// Who acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    /// The network's operator.
    Operator,
    /// The interconnect's customer (its account).
    Customer,
    /// The connectivity partner that submitted the request.
    Partner,
}

/// An interconnect's kind, as far as its workflow goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Flow {
    /// A port on our device and a cross-connect, on a device of this dataplane.
    Direct(Dataplane),
    /// A partner's virtual circuit.
    Partner,
    /// AWS Dedicated Direct Connect.
    Aws,
    /// Google Cloud Interconnect (a VLAN attachment).
    Google,
}

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The stage before.
    pub from: Stage,
    /// The stage after.
    pub to: Stage,
    /// The step.
    pub step: Step,
    /// Who took it.
    pub by: Party,
    /// Their name (a token's name, a partner's name).
    pub who: String,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// A refused step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// Not a step of this stage.
    #[error("{step} is not a step from {stage:?} ({next})")]
    OutOfOrder {
        /// The step.
        step: &'static str,
        /// Where the workflow is.
        stage: Stage,
        /// What may come next.
        next: String,
    },
    /// The step is another party's.
    #[error("{step} is the {owner:?}'s step, not the {by:?}'s")]
    NotYours {
        /// The step.
        step: &'static str,
        /// Whose it is.
        owner: Party,
        /// Who tried.
        by: Party,
    },
}

/// A workflow: its kind, where it is, and every transition so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workflow {
    /// The kind.
    pub flow: Flow,
    /// Where it is.
    pub stage: Stage,
    /// What happened, in order.
    pub history: Vec<Transition>,
}

impl Workflow {
    /// A new workflow: a direct interconnect starts with its slot assigned, a partner's with
    /// its request submitted, a cloud circuit with the customer's request.
    pub fn start(flow: Flow) -> Workflow {
        let stage = match flow {
            Flow::Direct(_) => Stage::SlotAssigned,
            Flow::Partner => Stage::Submitted,
            Flow::Aws | Flow::Google => Stage::Requested,
        };
        Workflow {
            flow,
            stage,
            history: Vec::new(),
        }
    }

    /// The steps that may come next, with whose they are.
    pub fn next(&self) -> Vec<(Step, Party)> {
        use Party::*;
        let mut out = match (self.stage, self.flow) {
            (Stage::SlotAssigned, _) => vec![(Step::IssueLoa, Operator)],
            (Stage::LoaIssued, _) => vec![(Step::OrderCrossConnect, Customer)],
            (Stage::CrossConnectOrdered, Flow::Direct(Dataplane::V1)) => {
                vec![(Step::ProposeConfiguration, Operator)]
            }
            (Stage::CrossConnectOrdered, _) => vec![(Step::Configure, Operator)],
            (Stage::ConfigurationProposed, _) => vec![(Step::ApproveConfiguration, Customer)],
            (Stage::ConfigurationApproved, _) => vec![(Step::Configure, Operator)],
            (Stage::Submitted, _) => vec![
                (Step::Accept, Operator),
                (
                    Step::Reject {
                        reason: String::new(),
                    },
                    Operator,
                ),
            ],
            (Stage::Accepted, _) => vec![(Step::Configure, Operator)],
            (Stage::Requested, Flow::Aws) => vec![(Step::OrderCrossConnect, Operator)],
            (Stage::Requested, _) => vec![(Step::Configure, Operator)],
            (Stage::Configured, _) => vec![(Step::Test, Operator)],
            (Stage::Tested, _) => vec![(Step::Activate, Operator)],
            (Stage::Active | Stage::Rejected | Stage::Canceled, _) => vec![],
        };
        if !matches!(
            self.stage,
            Stage::Active | Stage::Rejected | Stage::Canceled
        ) {
            // The customer or the operator may cancel before service.
            out.push((Step::Cancel, Customer));
        }
        out
    }

    /// Takes `step` by `by` (named `who`) at `at_ms`; the new stage, or why not (and nothing
    /// changes).
    pub fn take(&mut self, step: Step, by: Party, who: &str, at_ms: i64) -> Result<Stage, Refused> {
        let next = self.next();
        let name = step.name();
        let Some((_, owner)) = next.iter().find(|(s, _)| s.name() == name) else {
            return Err(Refused::OutOfOrder {
                step: name,
                stage: self.stage,
                next: if next.is_empty() {
                    "it is final".into()
                } else {
                    format!(
                        "next: {}",
                        next.iter()
                            .map(|(s, _)| s.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                },
            });
        };
        // The operator may cancel as well as the customer.
        let allowed = *owner == by || (matches!(step, Step::Cancel) && by == Party::Operator);
        if !allowed {
            return Err(Refused::NotYours {
                step: name,
                owner: *owner,
                by,
            });
        }
        let to = match &step {
            Step::IssueLoa => Stage::LoaIssued,
            Step::OrderCrossConnect => Stage::CrossConnectOrdered,
            Step::ProposeConfiguration => Stage::ConfigurationProposed,
            Step::ApproveConfiguration => Stage::ConfigurationApproved,
            Step::Accept => Stage::Accepted,
            Step::Reject { .. } => Stage::Rejected,
            Step::Configure => Stage::Configured,
            Step::Test => Stage::Tested,
            Step::Activate => Stage::Active,
            Step::Cancel => Stage::Canceled,
        };
        self.history.push(Transition {
            from: self.stage,
            to,
            step,
            by,
            who: who.to_string(),
            at_ms,
        });
        self.stage = to;
        Ok(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Party::*;

    fn run(flow: Flow, steps: &[(Step, Party)]) -> Result<Workflow, (usize, Refused)> {
        let mut w = Workflow::start(flow);
        for (i, (step, by)) in steps.iter().enumerate() {
            w.take(step.clone(), *by, "someone", i as i64)
                .map_err(|e| (i, e))?;
        }
        Ok(w)
    }

    #[test]
    fn a_direct_v1_interconnect_goes_through_the_configuration_document() {
        let steps = [
            (Step::IssueLoa, Operator),
            (Step::OrderCrossConnect, Customer),
            (Step::ProposeConfiguration, Operator),
            (Step::ApproveConfiguration, Customer),
            (Step::Configure, Operator),
            (Step::Test, Operator),
            (Step::Activate, Operator),
        ];
        let w = run(Flow::Direct(Dataplane::V1), &steps).unwrap();
        assert_eq!(w.stage, Stage::Active);
        let path: Vec<Stage> = w.history.iter().map(|t| t.to).collect();
        assert_eq!(
            path,
            [
                Stage::LoaIssued,
                Stage::CrossConnectOrdered,
                Stage::ConfigurationProposed,
                Stage::ConfigurationApproved,
                Stage::Configured,
                Stage::Tested,
                Stage::Active
            ]
        );
        assert_eq!((w.history[1].by, w.history[1].at_ms), (Customer, 1));
        assert!(w.next().is_empty(), "active is final");
    }

    #[test]
    fn a_direct_v2_interconnect_skips_the_document_and_steps_out_of_order_are_refused() {
        let ok = [
            (Step::IssueLoa, Operator),
            (Step::OrderCrossConnect, Customer),
            (Step::Configure, Operator),
        ];
        assert_eq!(
            run(Flow::Direct(Dataplane::V2), &ok).unwrap().stage,
            Stage::Configured
        );
        let (at, e) = run(
            Flow::Direct(Dataplane::V2),
            &[
                (Step::IssueLoa, Operator),
                (Step::OrderCrossConnect, Customer),
                (Step::ProposeConfiguration, Operator),
            ],
        )
        .unwrap_err();
        assert_eq!(at, 2);
        assert_eq!(
            e.to_string(),
            "propose_configuration is not a step from CrossConnectOrdered (next: configure, cancel)"
        );
        // The customer orders the cross-connect, not the operator; a refusal changes nothing.
        let mut w = Workflow::start(Flow::Direct(Dataplane::V1));
        w.take(Step::IssueLoa, Operator, "ops", 1).unwrap();
        let e = w
            .take(Step::OrderCrossConnect, Operator, "ops", 2)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "order_cross_connect is the Customer's step, not the Operator's"
        );
        assert_eq!((w.stage, w.history.len()), (Stage::LoaIssued, 1));
        // Nor may the customer skip to configuring.
        assert!(w.take(Step::Configure, Customer, "c", 3).is_err());
    }

    #[test]
    fn partner_requests_are_accepted_or_rejected_by_the_operator_and_cloud_circuits_differ_by_provider(
    ) {
        let (_, e) = run(Flow::Partner, &[(Step::Accept, Partner)]).unwrap_err();
        assert!(matches!(
            e,
            Refused::NotYours {
                owner: Operator,
                by: Partner,
                ..
            }
        ));
        let w = run(
            Flow::Partner,
            &[(
                Step::Reject {
                    reason: "no capacity".into(),
                },
                Operator,
            )],
        )
        .unwrap();
        assert_eq!(w.stage, Stage::Rejected);
        assert!(w.next().is_empty(), "rejected is final");
        let w = run(
            Flow::Partner,
            &[(Step::Accept, Operator), (Step::Configure, Operator)],
        )
        .unwrap();
        assert_eq!(w.stage, Stage::Configured);

        let aws = run(
            Flow::Aws,
            &[
                (Step::OrderCrossConnect, Operator),
                (Step::Configure, Operator),
            ],
        )
        .unwrap();
        assert_eq!(aws.stage, Stage::Configured);
        assert!(
            run(Flow::Aws, &[(Step::Configure, Operator)]).is_err(),
            "AWS needs its cross-connect"
        );
        assert!(
            run(Flow::Google, &[(Step::OrderCrossConnect, Operator)]).is_err(),
            "Google has none"
        );
        assert_eq!(
            run(Flow::Google, &[(Step::Configure, Operator)])
                .unwrap()
                .stage,
            Stage::Configured
        );
    }

    #[test]
    fn either_side_may_cancel_before_service_and_nobody_after() {
        let w = run(
            Flow::Direct(Dataplane::V1),
            &[(Step::IssueLoa, Operator), (Step::Cancel, Customer)],
        )
        .unwrap();
        assert_eq!(w.stage, Stage::Canceled);
        assert!(run(Flow::Partner, &[(Step::Cancel, Operator)]).is_ok());
        assert!(
            run(Flow::Partner, &[(Step::Cancel, Partner)]).is_err(),
            "a partner does not cancel"
        );
        let active = [
            (Step::Configure, Operator),
            (Step::Test, Operator),
            (Step::Activate, Operator),
            (Step::Cancel, Customer),
        ];
        let (at, e) = run(Flow::Google, &active).unwrap_err();
        assert_eq!(at, 3);
        assert_eq!(
            e.to_string(),
            "cancel is not a step from Active (it is final)"
        );
    }
}
