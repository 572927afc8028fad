"""Dhan's error model: ``{"errorType", "errorCode", "errorMessage"}`` with a DH-9xx code.

HTTP statuses are not documented by Dhan for most codes; the simulator's choice:
DH-901 401, DH-902 403, DH-903 400, DH-904 429, DH-905 400 (observed), DH-906 400,
DH-907 404, DH-908 500, DH-909 502, DH-910 400, DH-911 403.
"""

from __future__ import annotations

from typing import Any

ERRORS: dict[str, tuple[str, int]] = {
    "DH-901": ("Invalid_Authentication", 401),
    "DH-902": ("Invalid_Access", 403),
    "DH-903": ("User_Account", 400),
    "DH-904": ("Rate_Limit", 429),
    "DH-905": ("Input_Exception", 400),
    "DH-906": ("Order_Error", 400),
    "DH-907": ("Data_Error", 404),
    "DH-908": ("Internal_Server_Error", 500),
    "DH-909": ("Network_Error", 502),
    "DH-910": ("Others", 400),
    "DH-911": ("Invalid_IP", 403),
}


class SimError(Exception):
    """A request the simulated Dhan refuses, with the DH-9xx code it answers with."""

    def __init__(self, code: str, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        error_type, default_status = ERRORS.get(code, ("Others", 400))
        self.error_type = error_type
        self.http_status = http_status if http_status is not None else default_status

    def body(self) -> dict[str, Any]:
        return {"errorType": self.error_type, "errorCode": self.code, "errorMessage": self.message}


def input_error(message: str) -> SimError:
    return SimError("DH-905", message)


def order_error(message: str) -> SimError:
    return SimError("DH-906", message)


class UnknownOrder(SimError):
    """A lookup of an order id the account does not have; the profile decides the answer."""

    def __init__(self, order_id: str) -> None:
        super().__init__("DH-907", f"No order found for orderId {order_id!r}")


# Live Dhan's answer to a lookup of an unknown order id (§8b L1): a generic input error.
GENERIC_INPUT_MESSAGE = "Missing required fields, bad values for parameters etc."
