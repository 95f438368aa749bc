//! 802.1Q: the 4-byte tag (TPID 0x8100, then priority, drop eligibility and VLAN id) between an
//! Ethernet frame's source address and its EtherType. On a veth the kernel strips a received
//! tag and reports it beside the frame (`PACKET_AUXDATA`'s `tp_vlan_tci`), so the untagged side
//! takes either a tagged frame or an untagged one with its TCI.

/// The tag protocol identifier of 802.1Q.
pub const TPID: u16 = 0x8100;

/// A tag control information field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tci {
    /// Priority code point (0-7).
    pub pcp: u8,
    /// Drop eligible.
    pub dei: bool,
    /// VLAN id (1-4094).
    pub vid: u16,
}

impl Tci {
    /// The field's 16 bits.
    pub fn to_u16(self) -> u16 {
        (u16::from(self.pcp & 7) << 13) | (u16::from(self.dei) << 12) | (self.vid & 0x0fff)
    }

    /// From the field's 16 bits.
    pub fn from_u16(v: u16) -> Tci {
        Tci {
            pcp: (v >> 13) as u8,
            dei: v & 0x1000 != 0,
            vid: v & 0x0fff,
        }
    }
}

/// Why a frame cannot be tagged or untagged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VlanError {
    /// Shorter than two addresses and an EtherType.
    #[error("a frame of {0} bytes is shorter than an Ethernet header")]
    Short(usize),
    /// Already tagged (tagging again would make a Q-in-Q frame).
    #[error("the frame is already tagged")]
    Tagged,
    /// A VLAN id outside 1-4094.
    #[error("VLAN id {0} is outside 1-4094")]
    Vid(u16),
}

/// The frame with the tag `tci` inserted after its source address.
pub fn tag(frame: &[u8], tci: Tci) -> Result<Vec<u8>, VlanError> {
    if frame.len() < 14 {
        return Err(VlanError::Short(frame.len()));
    }
    if !(1..=4094).contains(&tci.vid) {
        return Err(VlanError::Vid(tci.vid));
    }
    if u16::from_be_bytes([frame[12], frame[13]]) == TPID {
        return Err(VlanError::Tagged);
    }
    let mut out = Vec::with_capacity(frame.len() + 4);
    out.extend_from_slice(&frame[..12]);
    out.extend_from_slice(&TPID.to_be_bytes());
    out.extend_from_slice(&tci.to_u16().to_be_bytes());
    out.extend_from_slice(&frame[12..]);
    Ok(out)
}

/// The tag of a tagged frame and the frame without it; none for an untagged frame.
pub fn untag(frame: &[u8]) -> Result<Option<(Tci, Vec<u8>)>, VlanError> {
    if frame.len() < 14 {
        return Err(VlanError::Short(frame.len()));
    }
    if u16::from_be_bytes([frame[12], frame[13]]) != TPID {
        return Ok(None);
    }
    if frame.len() < 18 {
        return Err(VlanError::Short(frame.len()));
    }
    let tci = Tci::from_u16(u16::from_be_bytes([frame[14], frame[15]]));
    let mut out = Vec::with_capacity(frame.len() - 4);
    out.extend_from_slice(&frame[..12]);
    out.extend_from_slice(&frame[16..]);
    Ok(Some((tci, out)))
}

/// What the untagged side of VLAN `vid` gets of a frame received on the port: the frame
/// without its tag when it belongs to `vid`, none when it belongs elsewhere (another VLAN, or
/// untagged traffic of the port itself). `reported` is the TCI the kernel took off the frame
/// and gave beside it (`PACKET_AUXDATA` with `TP_STATUS_VLAN_VALID`); without one, a tag still
/// in the frame counts.
pub fn for_vid(
    frame: &[u8],
    reported: Option<u16>,
    vid: u16,
) -> Option<std::borrow::Cow<'_, [u8]>> {
    use std::borrow::Cow;
    match reported {
        Some(tci) => {
            (Tci::from_u16(tci).vid == vid && frame.len() >= 14).then_some(Cow::Borrowed(frame))
        }
        None => match untag(frame) {
            Ok(Some((tci, inner))) if tci.vid == vid => Some(Cow::Owned(inner)),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_goes_after_the_source_address_and_comes_off_again() {
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        frame.extend_from_slice(&[0x08, 0x00, 0x45, 0x00]);
        let tci = Tci {
            pcp: 5,
            dei: false,
            vid: 100,
        };
        let tagged = tag(&frame, tci).unwrap();
        assert_eq!(
            &tagged[12..16],
            &[0x81, 0x00, 0xa0, 0x64],
            "TPID, PCP 5, VID 100"
        );
        assert_eq!(&tagged[16..18], &[0x08, 0x00]);
        assert_eq!(untag(&tagged).unwrap(), Some((tci, frame.clone())));
        assert_eq!(untag(&frame).unwrap(), None);
        assert_eq!(tag(&tagged, tci), Err(VlanError::Tagged));
        assert_eq!(
            tag(&frame, Tci { vid: 4095, ..tci }),
            Err(VlanError::Vid(4095))
        );
        assert_eq!(tag(&frame[..10], tci), Err(VlanError::Short(10)));
        assert_eq!(
            Tci::from_u16(0x1fff),
            Tci {
                pcp: 0,
                dei: true,
                vid: 4095
            }
        );
    }

    #[test]
    fn the_untagged_side_takes_its_own_vlan_whether_the_kernel_stripped_the_tag_or_not() {
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        frame.extend_from_slice(&[0x08, 0x06, 0, 1]);
        let tci = |vid| Tci {
            pcp: 0,
            dei: false,
            vid,
        };
        let tagged = tag(&frame, tci(100)).unwrap();
        // Stripped by the kernel (a veth), the TCI beside the frame.
        assert_eq!(
            for_vid(&frame, Some(tci(100).to_u16()), 100).as_deref(),
            Some(&frame[..])
        );
        assert_eq!(
            for_vid(&frame, Some(0xe064), 100).as_deref(),
            Some(&frame[..]),
            "priority 7"
        );
        assert_eq!(
            for_vid(&frame, Some(tci(200).to_u16()), 100),
            None,
            "another VLAN"
        );
        // Left in the frame (a device without receive VLAN offload).
        assert_eq!(for_vid(&tagged, None, 100).as_deref(), Some(&frame[..]));
        assert_eq!(for_vid(&tagged, None, 200), None);
        assert_eq!(
            for_vid(&frame, None, 100),
            None,
            "the port's own untagged traffic"
        );
        assert_eq!(
            for_vid(&frame[..8], Some(tci(100).to_u16()), 100),
            None,
            "runt"
        );
    }
}
