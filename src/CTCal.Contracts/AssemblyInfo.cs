// CTCal.Contracts: the interfaces a host and its plugins share. Plugins reference this assembly compile-only.
[assembly: System.CLSCompliant(false)]
