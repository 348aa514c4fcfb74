//! Small tower idioms every layer needs once.

/// Takes the service that `poll_ready` just drove to readiness, leaving a clone in its
/// place: tower's "clone, then `mem::replace`" idiom. The clone has not been polled, so the
/// next `poll_ready` drives it; the ready one goes with the request, and no capacity it
/// reserved is leaked by a clone that is never called.
///
/// ```
/// use reliability_core::service::take_ready;
///
/// let mut kept = vec![1];
/// let taken = take_ready(&mut kept);
/// assert_eq!((taken, kept), (vec![1], vec![1]));
/// ```
pub fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}
