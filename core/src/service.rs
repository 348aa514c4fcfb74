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

/// The accessors of a wrapping service to its field `inner` of type `$inner`: `get_ref`,
/// `get_mut` and `into_inner`, as tower's own services have them. Written inside the
/// service's inherent `impl` block.
///
/// ```
/// struct Wrapped<S> {
///     inner: S,
/// }
///
/// impl<S> Wrapped<S> {
///     reliability_core::inner_accessors!(S);
/// }
///
/// let mut w = Wrapped { inner: 1 };
/// *w.get_mut() += 1;
/// assert_eq!((*w.get_ref(), w.into_inner()), (2, 2));
/// ```
#[macro_export]
macro_rules! inner_accessors {
    ($inner:ty) => {
        /// The inner service.
        pub fn get_ref(&self) -> &$inner {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut $inner {
            &mut self.inner
        }

        /// Unwraps the inner service.
        pub fn into_inner(self) -> $inner {
            self.inner
        }
    };
}
