"""The pages' two languages: English and Simplified Chinese (zh-CN), chosen by the ``lang`` cookie
(the page's switch) or else the browser's ``Accept-Language``. Error messages of the library are
English sentences; :func:`error_text` gives the known ones in Chinese."""
from __future__ import annotations

import re

LANGUAGES = ("en", "zh")

ZH = {
    "Utility account": "缴费账户", "Operator console": "运营控制台", "Language": "语言",
    "User number": "用户编号", "Look up": "查询", "Name": "户名", "Utility": "类别", "Mode": "计费方式",
    "Balance": "余额", "Status": "状态", "Last settled day": "最近结算日", "none": "无",
    "Usage, last 30 days": "近 30 天用量", "Bills": "账单", "Period": "账期", "Quantity": "用量",
    "Amount": "金额", "Due": "到期日", "Tier": "阶梯", "Band": "时段", "Unit price": "单价",
    "Recent alerts": "最近提醒", "Time": "时间", "Kind": "类型", "Message": "内容",
    "Pay": "缴费", "Amount to pay": "缴费金额", "Payer (optional)": "付款人（可选）",
    "Auto top-up": "自动充值", "When the balance is below": "余额低于", "add": "时充值",
    "Save auto top-up": "保存自动充值", "Turn auto top-up off": "关闭自动充值", "off": "未开启",
    "Family contacts": "亲情提醒联系人", "Phone number": "手机号", "Relation": "关系",
    "Add contact": "添加联系人", "Remove contact": "删除联系人", "Phone number to remove": "要删除的手机号",
    "No usage settled yet.": "暂无已结算用量。", "No bills.": "暂无账单。", "No alerts.": "暂无提醒。",
    "No contacts.": "暂无联系人。", "Paid": "已缴费", "new balance": "新余额",
    "Saved.": "已保存。", "Error": "错误",
    "ok": "正常", "low": "余额不足", "arrears": "欠费", "disconnected": "已停供",
    "electricity": "电", "water": "水", "gas": "燃气", "heat": "热",
    "Premise area": "供暖面积", "area": "按面积计费", "basic": "基本热价", "energy": "计量热价", "floor": "保底补差",
    "cap": "封顶退差",
    "prepaid": "预付费", "postpaid": "后付费",
    "self": "本人", "daughter": "女儿", "son": "儿子", "family": "家人", "spouse": "配偶", "parent": "父母",
    "Sign in": "登录", "Operator": "操作员", "Password": "密码", "Sign out": "退出",
    "Sign in to the operator console.": "请登录运营控制台。",
    "Wrong operator name or password.": "操作员名称或密码错误。",
    "Billing runs": "结算运行", "Day": "日期", "Duration": "耗时", "Accounts": "账户数", "Money": "金额",
    "VEE": "数据校验", "Alerts by kind": "提醒（按类型）", "Deliveries failed": "投递失败",
    "Load curve": "负荷曲线", "Show": "显示", "Accounts in arrears or disconnected": "欠费或停供账户",
    "Arrears since": "欠费起始", "Dead letters by reason": "死信（按原因）", "Reason": "原因", "Count": "数量",
    "Find an account": "查找账户", "Ledger": "流水", "Ref": "参考号", "Balance after": "变动后余额",
    "Payments not yet settled": "未结算的缴费", "Channel": "渠道", "API docs": "API 文档",
    "Metrics": "指标", "No runs yet.": "暂无运行记录。", "None.": "无。", "Settings": "设置",
    "Contacts": "联系人", "Warning levels": "提醒阈值", "Tariff": "电价方案",
    "Sign in to see this page.": "请先登录后查看此页面。", "of": "共",
    "Skip to content": "跳到主要内容", "Usage chart": "用量图", "Load curve chart": "负荷曲线图",
    "kind": "类型", "The form expired; please try again.": "表单已过期，请重试。",
    "Being computed for this day; reload in a moment.": "正在计算当日数据，请稍后刷新。",
}

# library errors (English, with values) → Chinese templates
ERRORS_ZH = [
    (r"^unknown user number '(.+)'$", "用户编号 {0} 不存在"),
    (r"^amount '(.*)' is not a number$", "金额“{0}”不是数字"),
    (r"^(amount|below) '(.*)' has more than 2 decimal places$", "金额“{1}”超过两位小数"),
    (r"^(amount|below) '(.*)' must be positive$", "金额“{1}”必须大于零"),
    (r"^(amount|below) '(.*)' exceeds the maximum (.+)$", "金额“{1}”超过上限 {2}"),
    (r"^(amount|below) '(.*)' is too large$", "金额“{1}”过大"),
    (r"^(amount|below) '(.*)' is not a finite number$", "金额“{1}”不是有效数字"),
    (r"^below '(.*)' is not a number$", "阈值“{0}”不是数字"),
    (r"^auto top-up needs both below and amount$", "自动充值需要同时填写阈值和金额"),
    (r"^auto top-up amount must be positive$", "自动充值金额必须大于零"),
    (r"^contact recipient must be .*$", "联系人手机号不能为空，且最多 200 个字符"),
    (r"^contact relation must be .*$", "关系不能为空，且最多 200 个字符"),
    (r"^account (\S+) has no contact '(.+)'$", "账户 {0} 没有联系人 {1}"),
    (r"^a change cannot take effect on (\S+): days up to (\S+) are settled.*$", "{0} 已结算，无法在当天生效"),
    (r"^payer must be .*$", "付款人最多 200 个字符"),
    (r"^the resident page's channel .*$", "本页面的缴费渠道尚未配置（运行 meters channels add）"),
]


def choose(cookie: str | None, accept_language: str | None) -> str:
    """``en`` or ``zh``: the cookie's choice, else the first of Accept-Language we speak (default zh)."""
    if cookie in LANGUAGES:
        return cookie
    ranked = []
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        ranked.append((-weight, i, tag.strip().lower()))
    for _, _, tag in sorted(ranked):
        base = tag.split("-")[0]
        if base in LANGUAGES:
            return base
    return "zh"


def translator(lang: str):
    """``t(text)``: ``text`` in ``lang`` (English is the key)."""
    if lang == "zh":
        return lambda text: ZH.get(text, text)
    return lambda text: text


def error_text(message: str, lang: str) -> str:
    """A library error in ``lang`` (unknown ones stay in English, prefixed in Chinese)."""
    if lang != "zh":
        return message
    for pattern, template in ERRORS_ZH:
        m = re.match(pattern, message)
        if m:
            return template.format(*m.groups())
    return f"请求被拒绝：{message}"
